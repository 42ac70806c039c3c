//! IRQL proof tokens: values whose existence proves the code holding them runs at a given
//! interrupt request level, so routines that are only legal at one level say so in their
//! signature.
//!
//! - [`PassiveLevel`]: minted only by the checked constructor [`PassiveLevel::current`].
//!   Routines that may block or wait ([`Timer::wait`](super::timer::Timer::wait),
//!   [`reclaim_deferred`](super::deferred::reclaim_deferred)) take `&PassiveLevel`.
//! - [`DispatchLevel`]: never handed out by value. The timer DPC trampoline lends one to the
//!   callback for the duration of the call, and a spin-lock guard lends one for as long as
//!   it holds the lock. So a timer callback, which only ever sees `&DispatchLevel`, cannot
//!   call a PASSIVE-only routine: that is a type error, not a bug check.
//!
//! Both tokens are neither `Send` nor `Sync` (IRQL belongs to the processor the thread is
//! on) and are neither `Clone` nor `Copy`.

use core::marker::PhantomData;

use super::sys;

/// Reads the current processor's IRQL. Any IRQL.
#[must_use]
pub fn current_irql() -> u8 {
    // SAFETY: KeGetCurrentIrql has no preconditions and is callable at any IRQL.
    unsafe { sys::KeGetCurrentIrql() }
}

/// `PASSIVE_LEVEL` as the `KIRQL` the kernel reports.
pub(crate) const PASSIVE: u8 = level(sys::PASSIVE_LEVEL);

/// Narrows an IRQL `#define` (bindgen makes them `u32`) to a `KIRQL`, at compile time.
const fn level(value: u32) -> u8 {
    let bytes = value.to_le_bytes();
    assert!(
        bytes[1] == 0 && bytes[2] == 0 && bytes[3] == 0,
        "an IRQL fits in a KIRQL"
    );
    bytes[0]
}

/// Proof that the current thread runs at `PASSIVE_LEVEL`.
///
/// # Invariants
///
/// A `PassiveLevel` exists only on a thread that was at `PASSIVE_LEVEL` when the token was
/// made, and it never leaves that thread (it is `!Send`). The safe layer's only way to
/// raise IRQL is a [`SpinLock`](super::spin_lock::SpinLock) guard, during which a token made
/// earlier still exists; so the PASSIVE-only routines also re-check the level with
/// [`PassiveLevel::still_passive`] (one register read) and refuse instead of calling the
/// kernel at the wrong level. That keeps a held token from ever causing a bug check.
#[derive(Debug)]
pub struct PassiveLevel {
    not_send: PhantomData<*mut ()>,
}

impl PassiveLevel {
    /// Returns a token if the current IRQL is `PASSIVE_LEVEL`, `None` otherwise. Any IRQL.
    #[must_use]
    pub fn current() -> Option<Self> {
        if current_irql() == PASSIVE {
            // INVARIANT: the IRQL was just read as PASSIVE_LEVEL on this thread.
            Some(Self {
                not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// Whether the thread is still at `PASSIVE_LEVEL` (it may have raised IRQL since the
    /// token was made, e.g. by holding a spin lock). Any IRQL.
    #[must_use]
    pub fn still_passive(&self) -> bool {
        current_irql() == PASSIVE
    }
}

/// Proof that the current processor runs at `DISPATCH_LEVEL`.
///
/// Only ever lent out by reference, by the code that owns the raised level: the DPC
/// trampolines (the kernel calls DPC routines at `DISPATCH_LEVEL`) and the spin-lock guards.
///
/// # Invariants
///
/// A `DispatchLevel` exists only while its creator keeps the processor at
/// `DISPATCH_LEVEL`, and it never leaves that thread (`!Send`, `!Sync`). Because only
/// `&DispatchLevel` is handed out, with the lifetime of the raised region, no token
/// outlives the region it proves.
#[derive(Debug)]
pub struct DispatchLevel {
    not_send: PhantomData<*mut ()>,
}

impl DispatchLevel {
    /// Makes a token.
    ///
    /// # Safety
    ///
    /// The current processor must be at `DISPATCH_LEVEL`, and the caller must keep it there
    /// for as long as the token or any reference to it lives; the token must be lent out
    /// only by reference. Any IRQL (the precondition is the caller's to establish).
    pub(crate) const unsafe fn new_unchecked() -> Self {
        Self {
            not_send: PhantomData,
        }
    }
}

// The tests drive the simulator's IRQL, so they exist only where the seam is bound to it.
#[cfg(all(test, not(loom), not(windows)))]
mod tests {
    use super::*;

    #[test]
    fn passive_token_is_available_at_passive_level_only() {
        let kernel = kernel_sim::Kernel::new(kernel_sim::Config::default());
        let _entered = kernel.enter();
        let token = PassiveLevel::current().expect("a freshly entered thread is at PASSIVE");
        assert!(token.still_passive());
        assert_eq!(current_irql(), PASSIVE);
        let lock = crate::spin_lock::SpinLock::new(0_u32);
        let guard = lock.lock();
        assert_eq!(current_irql(), 2, "DISPATCH_LEVEL");
        assert!(PassiveLevel::current().is_none());
        assert!(!token.still_passive(), "the re-check sees the raised IRQL");
        drop(guard);
        assert!(token.still_passive());
    }

    #[test]
    fn passive_level_is_zero() {
        assert_eq!(PASSIVE, 0);
    }
}
