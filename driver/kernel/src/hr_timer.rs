//! [`HighResolutionTimer<C>`]: an `EX_TIMER` created with `EX_TIMER_HIGH_RESOLUTION`
//! (Windows 8.1 and later), which expires at its due time instead of at the next clock
//! tick, calling the same [`TimerCallback`] as [`Timer`](super::timer::Timer).
//!
//! The kernel allocates and owns the `EX_TIMER` (`ExAllocateTimer`); this layer owns the
//! callback's storage (pinned, non-paged) and passes it as the callback context.
//!
//! ```text
//!   new: pool storage + ExAllocateTimer(trampoline, storage, HIGH_RESOLUTION)
//!   Idle --set_once/set_periodic (ExSetTimer, relative due time)--> Set
//!   Set  --expiry--> callback at DISPATCH_LEVEL; one-shot: Idle, periodic: stays Set
//!   Set  --cancel (ExCancelTimer) -> true--> Idle
//!   drop: mark torn down, then
//!     at PASSIVE_LEVEL: ExDeleteTimer(Cancel, Wait) (waits out a running callback) -> free
//!     above PASSIVE:    ExCancelTimer, park -> reclaim_deferred(): ExDeleteTimer(Cancel,
//!                       Wait) -> free
//! ```
//!
//! Due times are relative only (the kernel requires it for high-resolution timers) and
//! periods are in 100 ns units.

use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomPinned;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::ptr::{self, NonNull};

use super::deferred::{self, DeferredNode, TornDown};
use super::irql::{DispatchLevel, PassiveLevel};
use super::pool::{AllocationFailed, PoolBox, PoolTag};
use super::sync::{AtomicPtr, Ordering};
use super::sys;
use super::time::Interval;
use super::timer::TimerCallback;

/// The callback's storage, passed to the kernel as the timer's callback context.
///
/// # Invariants
///
/// - Pinned and `!Unpin`; `node` is the first field (`#[repr(C)]`).
/// - `ex_timer` holds the `EX_TIMER` allocated for this storage (set once, in `new`,
///   before the timer can be set).
/// - Freed (and `callback` dropped) only by `finish::<C>` at `PASSIVE_LEVEL`, right after
///   `ExDeleteTimer(.., Cancel = TRUE, Wait = TRUE, ..)` returned: no callback runs on it
///   and none can start.
#[repr(C)]
struct HrStorage<C> {
    node: DeferredNode,
    torn_down: TornDown,
    // The WDK names no `EX_TIMER` type (only `PEX_TIMER`, to an opaque struct), so the
    // pointer is kept untyped and cast back at each use.
    ex_timer: AtomicPtr<c_void>,
    callback: C,
    pinned: PhantomPinned,
}

/// A high-resolution kernel timer that calls `C` at every expiry.
///
/// Dropping it stops the timer and frees its storage only once no callback can run on it.
///
/// # Invariants
///
/// `storage` satisfies `HrStorage`'s invariants and `timer` is its `EX_TIMER`, not yet
/// deleted; `storage` is taken out only in `drop`.
pub struct HighResolutionTimer<C: TimerCallback> {
    storage: ManuallyDrop<Pin<PoolBox<HrStorage<C>>>>,
    timer: NonNull<c_void>,
}

// SAFETY: the EX_TIMER is only used through Ex routines callable from any thread, which
// synchronise internally; the rest is `C` (Send + Sync) and atomics.
unsafe impl<C: TimerCallback> Send for HighResolutionTimer<C> {}
// SAFETY: every `&self` method is an Ex timer routine that may run concurrently on one
// timer, or a read of `C` (Sync).
unsafe impl<C: TimerCallback> Sync for HighResolutionTimer<C> {}

impl<C: TimerCallback> HighResolutionTimer<C> {
    /// Allocates a high-resolution timer that calls `callback` at every expiry; the
    /// callback's storage is tagged `pool_tag`. IRQL <= `DISPATCH_LEVEL`.
    ///
    /// # Errors
    ///
    /// [`AllocationFailed`] if the pool is exhausted or `ExAllocateTimer` fails.
    pub fn new(callback: C, pool_tag: PoolTag) -> Result<Self, AllocationFailed> {
        let storage = PoolBox::pin(
            HrStorage {
                node: DeferredNode::new(finish::<C>, pool_tag),
                torn_down: TornDown::new(),
                ex_timer: AtomicPtr::new(ptr::null_mut()),
                callback,
                pinned: PhantomPinned,
            },
            pool_tag,
        )?;
        let context = PoolBox::as_ptr(&storage);
        // SAFETY: the callback is the trampoline for this `C` and the context is the pinned
        // storage, which outlives the EX_TIMER (HrStorage's invariant: freed only after
        // ExDeleteTimer waited). Legal at IRQL <= DISPATCH_LEVEL.
        let timer = unsafe {
            sys::ExAllocateTimer(
                Some(hr_timer_callback::<C>),
                context.as_ptr().cast(),
                sys::EX_TIMER_HIGH_RESOLUTION,
            )
        };
        let Some(timer) = NonNull::new(timer.cast::<c_void>()) else {
            // The storage was never shared with the kernel: dropping it frees it.
            return Err(AllocationFailed);
        };
        // INVARIANT: recorded before the timer can be set (only this handle can set it).
        storage.ex_timer.store(timer.as_ptr(), Ordering::Relaxed);
        Ok(Self {
            storage: ManuallyDrop::new(storage),
            timer,
        })
    }

    /// The kernel's handle of this timer. Any IRQL.
    fn ex_timer(&self) -> sys::PEX_TIMER {
        self.timer.as_ptr().cast()
    }

    /// Arms a one-shot expiry `due` from now (replacing any earlier setting). Returns
    /// whether the timer was already set. IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was already set"]
    pub fn set_once(&self, due: Interval) -> bool {
        self.set(due, 0)
    }

    /// Arms a periodic timer: first expiry `due` from now, then every `period` (a zero
    /// period arms a one-shot, as `ExSetTimer` does). Returns whether the timer was already
    /// set. IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was already set"]
    pub fn set_periodic(&self, due: Interval, period: Interval) -> bool {
        self.set(due, period.to_kernel_period())
    }

    /// IRQL <= `DISPATCH_LEVEL`.
    fn set(&self, due: Interval, period: sys::LONGLONG) -> bool {
        let mut parameters = sys::ext_set_parameters();
        // SAFETY: the EX_TIMER is alive (the handle's invariant); the due time is strictly
        // relative as high-resolution timers require; the parameter block is initialised
        // as ExInitializeSetTimerParameters does. IRQL <= DISPATCH_LEVEL.
        let was_set = unsafe {
            sys::ExSetTimer(
                self.ex_timer(),
                due.to_kernel_relative_nonzero(),
                period,
                &raw mut parameters,
            )
        };
        was_set != 0
    }

    /// Takes the timer out of the timer queue. Returns whether it was set. Does not wait for
    /// a running callback. IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was set; if not, its DPC may still run"]
    pub fn cancel(&self) -> bool {
        // SAFETY: the EX_TIMER is alive; no cancel parameters; IRQL <= DISPATCH_LEVEL.
        let was_set = unsafe { sys::ExCancelTimer(self.ex_timer(), ptr::null_mut()) };
        was_set != 0
    }

    /// The callback this timer calls. Any IRQL.
    #[must_use]
    pub fn callback(&self) -> &C {
        &self.storage.callback
    }
}

impl<C: TimerCallback> Drop for HighResolutionTimer<C> {
    /// Stops the timer and frees the storage once no callback can run on it. IRQL <=
    /// `DISPATCH_LEVEL`: at `PASSIVE_LEVEL` it waits for a running callback; above, it
    /// cancels and defers the deletion and free to [`reclaim_deferred`](super::deferred::reclaim_deferred).
    fn drop(&mut self) {
        self.storage.torn_down.tear_down();
        // SAFETY: taken out exactly once, here, and not used afterwards.
        let storage = unsafe { ManuallyDrop::take(&mut self.storage) };
        let (block, _tag) = PoolBox::into_raw(storage);
        let node = block.cast::<DeferredNode>();
        if PassiveLevel::current().is_some() {
            // SAFETY: at PASSIVE_LEVEL; we own the block, nobody else can set its timer, and
            // its finisher deletes the timer (waiting) before freeing.
            unsafe { finish::<C>(node) };
        } else {
            // SAFETY: the EX_TIMER is alive; legal at IRQL <= DISPATCH_LEVEL.
            unsafe { sys::ExCancelTimer(self.ex_timer(), ptr::null_mut()) };
            // SAFETY: we own the block, whose node is on no list; `finish::<C>` completes it
            // at PASSIVE_LEVEL.
            unsafe { deferred::park(node) };
        }
    }
}

impl<C: TimerCallback> fmt::Debug for HighResolutionTimer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HighResolutionTimer")
            .finish_non_exhaustive()
    }
}

/// Deletes a retired timer (waiting for a running callback) and frees its storage.
/// `PASSIVE_LEVEL`.
///
/// # Safety
///
/// `node` is the node of an `HrStorage<C>` given up by `HighResolutionTimer::drop` (marked
/// torn down); called once, at `PASSIVE_LEVEL`.
unsafe fn finish<C: TimerCallback>(node: NonNull<DeferredNode>) {
    let block = node.cast::<HrStorage<C>>();
    // SAFETY: the node is the first field of the #[repr(C)] storage, which is alive.
    let storage = unsafe { block.as_ref() };
    let timer: sys::PEX_TIMER = storage.ex_timer.load(Ordering::Relaxed).cast();
    let tag = storage.node.tag();
    // SAFETY: `timer` is this storage's EX_TIMER, deleted only here; Cancel + Wait at
    // PASSIVE_LEVEL (<= APC_LEVEL is required for Wait) returns once no callback runs.
    unsafe {
        sys::ExDeleteTimer(
            timer,
            sys::BOOLEAN::from(true),
            sys::BOOLEAN::from(true),
            ptr::null_mut(),
        )
    };
    // SAFETY: block and tag came from one PoolBox::into_raw (in drop); this is the only
    // from_raw. INVARIANT (HrStorage): freed right after ExDeleteTimer waited.
    drop(unsafe { PoolBox::from_raw(block, tag) });
}

/// The one `EX_TIMER` callback of every `HighResolutionTimer<C>`: calls the callback at
/// `DISPATCH_LEVEL`.
///
/// # Safety
///
/// Called by the kernel only, for an `EX_TIMER` allocated by `HighResolutionTimer::<C>::new`
/// with its storage as `context`.
unsafe extern "C" fn hr_timer_callback<C: TimerCallback>(
    _timer: sys::PEX_TIMER,
    context: sys::PVOID,
) {
    // SAFETY: `context` is the storage, freed only after ExDeleteTimer waited for this
    // callback to return (HrStorage's invariant).
    let storage = unsafe { &*context.cast::<HrStorage<C>>() };
    if !storage.torn_down.admits_callback() {
        return;
    }
    // SAFETY: the kernel runs EX_TIMER callbacks at DISPATCH_LEVEL until they return; the
    // token is only lent by reference for the call.
    // INVARIANT (DispatchLevel): the token lives in this frame and is only lent by reference.
    let irql = unsafe { DispatchLevel::new_unchecked() };
    storage.callback.expired(&irql);
}
