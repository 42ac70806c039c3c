//! [`Timer<C>`]: a kernel `KTIMER` with its `KDPC`, owned, pinned in non-paged pool, and
//! calling a safe [`TimerCallback`] at `DISPATCH_LEVEL` on every expiry.
//!
//! # State diagram
//!
//! The kernel owns the timer's state; this layer adds the handle's lifetime around it.
//!
//! ```text
//!                 Timer::new (pool + KeInitializeTimerEx + KeInitializeDpc)
//!                                     |
//!                                     v
//!        cancel() -> false   +----------------+   set_*() -> false
//!       +------------------->|     Idle       |--------------------------+
//!       |                    | (not in queue) |                          |
//!       |                    +----------------+                          v
//!       |                        ^        ^                      +---------------+
//!       |        one-shot expiry |        |  cancel() -> true    |     Set       |<--+
//!       |  (Signaled, DPC queued)|        +----------------------| (timer queue) |   | set_*() -> true
//!       |                        +-------------------------------|               |---+ (re-armed)
//!       |                                                        +---------------+
//!       |                       periodic expiry: Signaled, DPC queued, stays Set  |
//!       |                                                                         |
//!   DPC: Idle --expiry--> Queued --dequeued by a CPU--> Running (callback) --> Idle
//!        (queuing a Queued DPC does nothing: periodic expiries can coalesce; a periodic
//!         DPC can be Queued again while an earlier run is still Running elsewhere)
//!
//!   drop(Timer), from any state:
//!     mark torn down (no callback starts after this) -> KeCancelTimer -> KeRemoveQueueDpc
//!       at PASSIVE_LEVEL:  KeFlushQueuedDpcs (waits out a Running callback) -> free
//!       above PASSIVE:     park on the deferred list -> next PASSIVE teardown or
//!                          reclaim_deferred(): KeFlushQueuedDpcs -> free
//! ```
//!
//! # Subtle cases, and why they are safe
//!
//! - **Drop while the callback runs on another CPU**: `KeCancelTimer` does not wait for it;
//!   the flush does, before the storage is freed. The callback only ever holds `&C`
//!   borrowed from the storage, so it never sees freed memory.
//! - **A periodic DPC queued again while an earlier run is still running**: the drop
//!   cancels the timer first (no further expiries), then dequeues the queued run (or lets
//!   it start and return at once, seeing the torn-down mark), and the flush waits for both.
//! - **A DPC queued after the flush began**: nothing can arm a timer whose handle is being
//!   dropped (`drop` has the only handle), so only an expiry the kernel was processing
//!   while the timer was cancelled could queue it. The kernel's documented teardown
//!   (cancel, then flush) covers that; as a second line the teardown dequeues the DPC again
//!   after the flush. This relies on Windows honouring that documented contract; on the
//!   simulator it holds by construction. Not verified on Windows here.
//! - **A callback that re-arms its own timer**: it can only reach its timer through shared
//!   ownership (e.g. an `Arc<Timer<_>>` or a `SpinLock<Option<Timer<_>>>` inside `C`), so
//!   the handle cannot be dropped while that reference exists: drop and re-arm never race.
//! - **A callback that drops its own timer** (takes it out of a `SpinLock<Option<..>>`):
//!   that drop runs at `DISPATCH_LEVEL`, so it is deferred; the storage outlives the
//!   callback that is still running on it.
//! - **A drop at `DISPATCH_LEVEL`** (e.g. under a spin lock): deferred, never a bug check
//!   and never a use-after-free (see [`super::deferred`]). The callback `C` is then dropped
//!   at `PASSIVE_LEVEL` when the storage is reclaimed.
//!
//! Arming, cancelling and the expiry path allocate nothing.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomPinned;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::time::Duration;

use super::deferred::{self, DeferredNode, TornDown};
use super::irql::{DispatchLevel, PassiveLevel};
use super::pool::{AllocationFailed, PoolBox, PoolTag};
use super::sys;
use super::time::{DueTime, Interval, Period, TolerableDelay};

/// What a timer does on expiry. Runs at `DISPATCH_LEVEL`, in an arbitrary thread context,
/// possibly on several processors at once for a periodic timer (a run can still be going
/// when the next one starts): it must not block, wait or touch pageable memory, and should
/// be short. `Send + Sync + 'static` because it runs on other processors and outlives any
/// stack frame. It must not panic: in the kernel a panic is a bug check. It lives in the
/// timer's pool block, so its alignment may not exceed [`POOL_ALIGNMENT`](super::pool::POOL_ALIGNMENT)
/// (checked at compile time). Once a timer owns it, its `Drop` runs at `PASSIVE_LEVEL` (a timer
/// dropped above that keeps its callback until the deferred reclaim); if `new` fails, `new`
/// drops it at the caller's IRQL.
pub trait TimerCallback: Send + Sync + 'static {
    /// The timer expired. `irql` proves `DISPATCH_LEVEL`: it opens DPC-level spin locks
    /// ([`SpinLock::lock_at_dpc`](super::spin_lock::SpinLock::lock_at_dpc)) and cannot be
    /// turned into the `&PassiveLevel` that blocking routines need.
    fn expired(&self, irql: &DispatchLevel);
}

/// A shared callback: lets the owner keep a handle on the callback's state (counters,
/// queues) that outlives the timer.
impl<T: TimerCallback + ?Sized> TimerCallback for Arc<T> {
    /// `DISPATCH_LEVEL`.
    fn expired(&self, irql: &DispatchLevel) {
        T::expired(self, irql);
    }
}

/// Notification or synchronization timer (`KeInitializeTimerEx`'s `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Once signaled, stays signaled (releasing every waiter) until set again.
    Notification,
    /// Signaled releases exactly one waiter, which resets it to not signaled.
    Synchronization,
}

impl TimerKind {
    /// Any IRQL.
    fn to_kernel(self) -> sys::TIMER_TYPE {
        match self {
            Self::Notification => sys::_TIMER_TYPE::NotificationTimer,
            Self::Synchronization => sys::_TIMER_TYPE::SynchronizationTimer,
        }
    }
}

/// How [`Timer::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The timer was (or became) signaled.
    Signaled,
    /// The timeout elapsed first.
    TimedOut,
    /// The thread was no longer at `PASSIVE_LEVEL` (it raised IRQL after making the
    /// token, e.g. by holding a spin lock): the wait was refused, the kernel not called.
    NotAtPassiveLevel,
    /// Any other status from `KeWaitForSingleObject`; none is expected for a
    /// non-alertable kernel-mode wait on a timer.
    Other(i32),
}

/// The storage the kernel links into its lists: pinned in non-paged pool.
///
/// # Invariants
///
/// - Never moves after `Timer::new` initialised `timer` and `dpc` in place (it is pinned
///   and `!Unpin`).
/// - `timer` was initialised by `KeInitializeTimerEx` and `dpc` by `KeInitializeDpc` with
///   the trampoline `timer_dpc::<C>` and this storage's address as context, before any
///   other use; neither is initialised again.
/// - The block is freed (and `callback` dropped) only by `finish::<C>`, at
///   `PASSIVE_LEVEL`, after the timer was cancelled, `torn_down` was set, the DPC dequeued
///   and `KeFlushQueuedDpcs` returned: no kernel list and no running DPC refers to it.
/// - `node` is the first field (`#[repr(C)]`), so a node pointer is a storage pointer.
#[repr(C)]
struct TimerStorage<C> {
    node: DeferredNode,
    torn_down: TornDown,
    timer: UnsafeCell<MaybeUninit<sys::KTIMER>>,
    dpc: UnsafeCell<MaybeUninit<sys::KDPC>>,
    callback: C,
    pinned: PhantomPinned,
}

impl<C> TimerStorage<C> {
    /// Any IRQL.
    fn timer_ptr(&self) -> sys::PKTIMER {
        self.timer.get().cast()
    }

    /// Any IRQL.
    fn dpc_ptr(&self) -> sys::PKDPC {
        self.dpc.get().cast()
    }
}

/// A kernel timer with a DPC that calls `C` at every expiry.
///
/// Dropping it stops the timer and frees its storage only once no DPC can touch it again
/// (see the module documentation). Moving a `Timer` is free and safe: the kernel objects
/// stay put in the pool.
///
/// # Invariants
///
/// `storage` holds a `TimerStorage<C>` satisfying its invariants; it is taken out only
/// in `drop`.
pub struct Timer<C: TimerCallback> {
    storage: ManuallyDrop<Pin<PoolBox<TimerStorage<C>>>>,
}

// SAFETY: the handle only reaches the KTIMER/KDPC through kernel routines that are
// callable from any thread and synchronise internally; the rest is `C` (Send + Sync) and
// atomics. Dropping on another thread is fine: drop checks the IRQL it runs at.
unsafe impl<C: TimerCallback> Send for Timer<C> {}
// SAFETY: every `&self` method is a kernel routine that is safe to call concurrently on
// one timer (the kernel serialises them) or a read of `C` (Sync).
unsafe impl<C: TimerCallback> Sync for Timer<C> {}

impl<C: TimerCallback> Timer<C> {
    /// Allocates and initialises a timer of `kind` that calls `callback` at every expiry.
    /// The storage is tagged `pool_tag`. IRQL <= `DISPATCH_LEVEL`.
    ///
    /// # Errors
    ///
    /// [`AllocationFailed`] if non-paged pool is exhausted (`callback` is dropped).
    pub fn new(kind: TimerKind, callback: C, pool_tag: PoolTag) -> Result<Self, AllocationFailed> {
        let storage = PoolBox::pin(
            TimerStorage {
                node: DeferredNode::new(finish::<C>, pool_tag),
                torn_down: TornDown::new(),
                timer: UnsafeCell::new(MaybeUninit::zeroed()),
                dpc: UnsafeCell::new(MaybeUninit::zeroed()),
                callback,
                pinned: PhantomPinned,
            },
            pool_tag,
        )?;
        let context = PoolBox::as_ptr(&storage);
        // SAFETY: the KTIMER is in pinned non-paged storage that will not move, and it was
        // never initialised or set; legal at IRQL <= DISPATCH_LEVEL.
        unsafe { sys::KeInitializeTimerEx(storage.timer_ptr(), kind.to_kernel()) };
        // SAFETY: the KDPC is in pinned non-paged storage, never queued; the routine is the
        // trampoline for this `C` and the context is this storage, which outlives every
        // run of the DPC (TimerStorage's invariant). Legal at any IRQL.
        unsafe {
            sys::KeInitializeDpc(
                storage.dpc_ptr(),
                Some(timer_dpc::<C>),
                context.as_ptr().cast(),
            );
        };
        // INVARIANT: the timer and DPC were initialised in place, once, before any use.
        Ok(Self {
            storage: ManuallyDrop::new(storage),
        })
    }

    /// Any IRQL.
    fn storage(&self) -> &TimerStorage<C> {
        &self.storage
    }

    /// Arms a one-shot expiry at `due` (replacing any earlier setting). Returns whether the
    /// timer was already set. IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was already set"]
    pub fn set_once(&self, due: DueTime) -> bool {
        self.set(due, 0)
    }

    /// Arms a periodic timer: first expiry at `due`, then every `period`. Returns whether
    /// the timer was already set. IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was already set"]
    pub fn set_periodic(&self, due: DueTime, period: Period) -> bool {
        self.set(due, period.to_kernel())
    }

    /// IRQL <= `DISPATCH_LEVEL`.
    fn set(&self, due: DueTime, period_ms: sys::LONG) -> bool {
        let storage = self.storage();
        let due = sys::LARGE_INTEGER {
            QuadPart: due.to_kernel(),
        };
        // SAFETY: the timer and DPC are initialised and pinned (TimerStorage's invariant);
        // the handle is alive, so the storage outlives the setting (drop cancels first).
        // Safe code runs at IRQL <= DISPATCH_LEVEL.
        let was_set =
            unsafe { sys::KeSetTimerEx(storage.timer_ptr(), due, period_ms, storage.dpc_ptr()) };
        was_set != 0
    }

    /// Arms a coalescable timer (`KeSetCoalescableTimer`): like [`Timer::set_once`] or
    /// [`Timer::set_periodic`], but the kernel may delay each expiry by up to
    /// `tolerable_delay` to batch wake-ups. Returns whether the timer was already set.
    /// IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was already set"]
    pub fn set_coalescable(
        &self,
        due: DueTime,
        period: Option<Period>,
        tolerable_delay: TolerableDelay,
    ) -> bool {
        let storage = self.storage();
        let due = sys::LARGE_INTEGER {
            QuadPart: due.to_kernel(),
        };
        let period_ms = period.map_or(0, Period::as_millis);
        // SAFETY: as in `set`.
        let was_set = unsafe {
            sys::KeSetCoalescableTimer(
                storage.timer_ptr(),
                due,
                period_ms,
                tolerable_delay.as_millis(),
                storage.dpc_ptr(),
            )
        };
        was_set != 0
    }

    /// Takes the timer out of the timer queue. Returns whether it was set (for a one-shot
    /// timer whose expiry already queued the DPC: false). Does **not** wait for a DPC that
    /// is queued or running: that callback may still run once. IRQL <= `DISPATCH_LEVEL`.
    #[must_use = "whether the timer was set; if not, its DPC may still run"]
    pub fn cancel(&self) -> bool {
        // SAFETY: the timer is initialised and pinned; IRQL <= DISPATCH_LEVEL.
        let was_set = unsafe { sys::KeCancelTimer(self.storage().timer_ptr()) };
        was_set != 0
    }

    /// Whether the timer is signaled (`KeReadStateTimer`; unsynchronised snapshot).
    /// IRQL <= `DISPATCH_LEVEL`.
    #[must_use]
    pub fn is_signaled(&self) -> bool {
        // SAFETY: the timer is initialised and pinned; IRQL <= DISPATCH_LEVEL.
        let state = unsafe { sys::KeReadStateTimer(self.storage().timer_ptr()) };
        state != 0
    }

    /// Waits until the timer is signaled or `timeout` elapses (`None`: no limit; a timeout
    /// beyond the kernel's range, ~29,000 years, also means no limit). A synchronization
    /// timer is reset by a successful wait. `PASSIVE_LEVEL` (proved by `passive`, and
    /// re-checked: see [`WaitOutcome::NotAtPassiveLevel`]).
    pub fn wait(&self, passive: &PassiveLevel, timeout: Option<Duration>) -> WaitOutcome {
        if !passive.still_passive() {
            return WaitOutcome::NotAtPassiveLevel;
        }
        let mut kernel_timeout = timeout
            .and_then(|timeout| Interval::from_duration(timeout).ok())
            .map(|timeout| sys::LARGE_INTEGER {
                QuadPart: timeout.to_kernel_relative(),
            });
        let timeout_ptr = kernel_timeout
            .as_mut()
            .map_or(ptr::null_mut(), ptr::from_mut);
        // SAFETY: the timer is an initialised dispatcher object in pinned storage that the
        // `&self` borrow keeps alive for the whole wait; the timeout pointer is null or
        // points to a local; the thread is at PASSIVE_LEVEL (checked above).
        let status = unsafe {
            sys::KeWaitForSingleObject(
                self.storage().timer_ptr().cast(),
                sys::_KWAIT_REASON::Executive,
                sys::KERNEL_MODE,
                sys::BOOLEAN::from(false),
                timeout_ptr,
            )
        };
        match status {
            sys::STATUS_SUCCESS => WaitOutcome::Signaled,
            sys::STATUS_TIMEOUT => WaitOutcome::TimedOut,
            other => WaitOutcome::Other(other),
        }
    }

    /// The callback this timer calls. Any IRQL.
    #[must_use]
    pub fn callback(&self) -> &C {
        &self.storage().callback
    }
}

impl<C: TimerCallback> Drop for Timer<C> {
    /// Stops the timer and frees its storage once no DPC can touch it. IRQL <=
    /// `DISPATCH_LEVEL`: at `PASSIVE_LEVEL` it waits for a running callback to return before
    /// freeing; above, it defers the free (see the module documentation).
    fn drop(&mut self) {
        let storage = self.storage();
        // A DPC that starts after this point does not call the callback.
        storage.torn_down.tear_down();
        // SAFETY: the timer is initialised and pinned; IRQL <= DISPATCH_LEVEL.
        unsafe { sys::KeCancelTimer(storage.timer_ptr()) };
        // SAFETY: the DPC is initialised and pinned; legal at any IRQL.
        unsafe { sys::KeRemoveQueueDpc(storage.dpc_ptr()) };
        // SAFETY: `storage` is taken out exactly once, here, and not used afterwards.
        let storage = unsafe { ManuallyDrop::take(&mut self.storage) };
        let (block, _tag) = PoolBox::into_raw(storage);
        // SAFETY: we own the block (the handle is being dropped, so nobody can set the
        // timer again), it was cancelled above, and its node is on no list; its finisher,
        // `finish::<C>`, frees it after the flush `retire` guarantees.
        unsafe { deferred::retire(block.cast::<DeferredNode>()) };
    }
}

impl<C: TimerCallback> fmt::Debug for Timer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("signaled", &self.is_signaled())
            .finish_non_exhaustive()
    }
}

/// Frees a retired timer's storage. `PASSIVE_LEVEL`, after `KeFlushQueuedDpcs`.
///
/// # Safety
///
/// `node` is the node of a `TimerStorage<C>` handed over by `Timer::drop` (cancelled,
/// marked torn down, DPC dequeued), and the DPCs have been flushed since; called once.
unsafe fn finish<C: TimerCallback>(node: NonNull<DeferredNode>) {
    let block = node.cast::<TimerStorage<C>>();
    // SAFETY: the node is the first field of the #[repr(C)] storage, which is still alive.
    let storage = unsafe { block.as_ref() };
    // A DPC queued after the flush began (only possible from an expiry that raced the
    // cancel) would still be in the queue: take it out before the memory goes.
    // SAFETY: the DPC is initialised and pinned; legal at any IRQL.
    unsafe { sys::KeRemoveQueueDpc(storage.dpc_ptr()) };
    let tag = storage.node.tag();
    // SAFETY: the block and tag came from one `PoolBox::into_raw` (in Timer::drop), and
    // this is the only `from_raw` for them. INVARIANT (TimerStorage): freed only here,
    // after cancel, torn_down, dequeue and flush.
    drop(unsafe { PoolBox::from_raw(block, tag) });
}

/// The one DPC routine of every `Timer<C>`: calls the callback at `DISPATCH_LEVEL`.
///
/// # Safety
///
/// Called by the kernel only, as the deferred routine of a KDPC initialised by
/// `Timer::<C>::new`, with that timer's storage as `context`.
unsafe extern "C" fn timer_dpc<C: TimerCallback>(
    _dpc: *mut sys::KDPC,
    context: sys::PVOID,
    _system_argument1: sys::PVOID,
    _system_argument2: sys::PVOID,
) {
    // SAFETY: `context` is the storage of this DPC's timer (set in `new`), which is not
    // freed before every run of this DPC has returned (TimerStorage's invariant: freed only
    // after a flush, which waits for this run).
    let storage = unsafe { &*context.cast::<TimerStorage<C>>() };
    if !storage.torn_down.admits_callback() {
        return;
    }
    // SAFETY: the kernel runs DPC routines at DISPATCH_LEVEL, and stays there until this
    // routine returns; the token is only lent by reference for the call.
    // INVARIANT (DispatchLevel): the token lives in this frame and is only lent by reference.
    let irql = unsafe { DispatchLevel::new_unchecked() };
    storage.callback.expired(&irql);
}
