//! [`SpinLock<T>`]: data guarded by a kernel `KSPIN_LOCK`, for state shared between
//! PASSIVE-level code and DPCs (such as a timer callback and the IOCTL path).
//!
//! Two ways in:
//! - [`SpinLock::lock`] at any IRQL <= `DISPATCH_LEVEL`: raises to `DISPATCH_LEVEL`
//!   (`KeAcquireSpinLockRaiseToDpc`) and restores the previous IRQL on release.
//! - [`SpinLock::lock_at_dpc`] from code that proves it already runs at `DISPATCH_LEVEL`
//!   (a timer callback's `&DispatchLevel`, or another guard's): skips the IRQL change
//!   (`KeAcquireSpinLockAtDpcLevel`).
//!
//! Both guards lend a `&DispatchLevel` token for as long as they hold the lock. Holding a
//! spin lock forbids blocking, so nothing that needs `&PassiveLevel` can run under it.
//! Taking the same lock again while holding it deadlocks (as in the kernel); keep critical
//! sections short and flat.

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};

use super::irql::DispatchLevel;
use super::sys;

/// Data of type `T` guarded by a kernel spin lock. Lives in whatever memory holds it; for
/// use from a DPC that memory must be non-paged (the driver's own pool allocations are).
///
/// # Invariants
///
/// `value` is only accessed through a guard, and a guard exists only while this thread
/// holds `lock`. `lock` is not moved while held (a guard borrows the `SpinLock`).
pub struct SpinLock<T> {
    lock: UnsafeCell<sys::KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`, so sharing a SpinLock hands `T` from
// thread to thread (needs `T: Send`) but never shares a `&T` across threads at once.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: a SpinLock owns its `T`; sending it sends the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked spin lock around `value`. Any IRQL.
    pub fn new(value: T) -> Self {
        let lock = UnsafeCell::new(0);
        // SAFETY: `lock` is valid for writes; initialising it is legal at any IRQL.
        unsafe { sys::KeInitializeSpinLock(lock.get()) };
        // INVARIANT: no guard exists yet; the only way to one is through `lock`/`lock_at_dpc`.
        Self {
            lock,
            value: UnsafeCell::new(value),
        }
    }

    /// Acquires the lock, raising the IRQL to `DISPATCH_LEVEL` until the guard is dropped.
    /// IRQL <= `DISPATCH_LEVEL`.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: `lock` was initialised in `new` and is not moved while held (the guard
        // borrows self); safe code runs at IRQL <= DISPATCH_LEVEL.
        let previous_irql = unsafe { sys::KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        // INVARIANT: this thread now holds the lock at DISPATCH_LEVEL; `previous_irql` is
        // what the release must restore.
        SpinLockGuard {
            lock: self,
            previous_irql,
            // SAFETY: KeAcquireSpinLockRaiseToDpc left the processor at DISPATCH_LEVEL and
            // the guard keeps it there until it is dropped; it lends the token by reference.
            // INVARIANT: the token lives inside the guard, so no longer than the raise.
            irql: unsafe { DispatchLevel::new_unchecked() },
        }
    }

    /// Acquires the lock from code already at `DISPATCH_LEVEL`, without changing the IRQL.
    /// `DISPATCH_LEVEL` (proved by `irql`).
    pub fn lock_at_dpc<'a>(&'a self, irql: &'a DispatchLevel) -> SpinLockDpcGuard<'a, T> {
        // SAFETY: `irql` proves the processor is at DISPATCH_LEVEL, the routine's
        // requirement; `lock` was initialised in `new` and is not moved while held.
        unsafe { sys::KeAcquireSpinLockAtDpcLevel(self.lock.get()) };
        // INVARIANT: this thread now holds the lock, at DISPATCH_LEVEL as `irql` proves.
        SpinLockDpcGuard { lock: self, irql }
    }

    /// The value, through exclusive access (no lock needed). Any IRQL.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Consumes the lock, returning the value. Any IRQL.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock").finish_non_exhaustive()
    }
}

/// Holds a [`SpinLock`] taken with [`SpinLock::lock`]; releases it and restores the IRQL
/// when dropped. Not `Send`: it must be released on the processor that took it.
///
/// # Invariants
///
/// This thread holds `lock.lock`, acquired by `KeAcquireSpinLockRaiseToDpc`, which
/// returned `previous_irql`; the processor stays at `DISPATCH_LEVEL` until the drop.
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
    previous_irql: sys::KIRQL,
    irql: DispatchLevel,
}

impl<T> SpinLockGuard<'_, T> {
    /// The proof that the holder runs at `DISPATCH_LEVEL`, valid while the lock is held.
    #[must_use]
    pub fn dispatch_level(&self) -> &DispatchLevel {
        &self.irql
    }
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard's invariant: the lock is held, so access is exclusive.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard's invariant: the lock is held, and `&mut self` is unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    /// `DISPATCH_LEVEL`; returns to the IRQL the lock was taken at.
    fn drop(&mut self) {
        // SAFETY: the guard's invariant: this thread holds the lock, taken by
        // KeAcquireSpinLockRaiseToDpc, which returned `previous_irql`.
        unsafe { sys::KeReleaseSpinLock(self.lock.lock.get(), self.previous_irql) };
    }
}

impl<T: fmt::Debug> fmt::Debug for SpinLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Holds a [`SpinLock`] taken with [`SpinLock::lock_at_dpc`]; releases it (leaving the IRQL
/// at `DISPATCH_LEVEL`) when dropped.
///
/// # Invariants
///
/// This thread holds `lock.lock`, acquired by `KeAcquireSpinLockAtDpcLevel` at
/// `DISPATCH_LEVEL`, which `irql` keeps proving for the guard's lifetime.
pub struct SpinLockDpcGuard<'a, T> {
    lock: &'a SpinLock<T>,
    irql: &'a DispatchLevel,
}

impl<T> SpinLockDpcGuard<'_, T> {
    /// The proof that the holder runs at `DISPATCH_LEVEL`.
    #[must_use]
    pub fn dispatch_level(&self) -> &DispatchLevel {
        self.irql
    }
}

impl<T> Deref for SpinLockDpcGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard's invariant: the lock is held, so access is exclusive.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinLockDpcGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard's invariant: the lock is held, and `&mut self` is unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinLockDpcGuard<'_, T> {
    /// `DISPATCH_LEVEL`.
    fn drop(&mut self) {
        // SAFETY: the guard's invariant: this thread holds the lock, taken at DISPATCH_LEVEL
        // by KeAcquireSpinLockAtDpcLevel, and is still at DISPATCH_LEVEL.
        unsafe { sys::KeReleaseSpinLockFromDpcLevel(self.lock.lock.get()) };
    }
}

impl<T: fmt::Debug> fmt::Debug for SpinLockDpcGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
