//! The service's state and a handle's, as the other modules share them: the service and
//! its registry, a handle (the front end's `FileHandle`, its shared core, its spin-locked
//! state) and a timer's DPC callback, which holds the handle's core (so these types refer
//! to each other and live together).

use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;

use crate::config::ServiceConfig;
use crate::ids::SlotTable;
use crate::ring::EventRing;
use crate::timer_entry::TimerEntry;
use crate::waits::{PendingWait, WaitList};
use ktimer_kernel::pool::PoolArc;
use ktimer_kernel::spin_lock::SpinLock;

/// The timer service, generic over the request type of its pending waits (the
/// [`PendingWait`] port; the dispatcher's [`Pended`](crate::dispatch::Pended)).
pub struct Service<R: PendingWait> {
    pub(crate) config: ServiceConfig,
    pub(crate) registry: SpinLock<Registry<R>>,
    pub(crate) next_serial: AtomicU32,
}

pub(crate) struct Registry<R: PendingWait> {
    pub(crate) handles: Vec<Option<PoolArc<HandleCore<R>>>>,
    pub(crate) unloading: bool,
}

/// An open handle, as the front end keeps it (in the file object's context; see
/// [`FileHandle::into_raw`]). Its core is a pool block shared with the service's registry
/// and the handle's timers; dropping the last owner frees it, so drop it at IRQL <=
/// `DISPATCH_LEVEL` (on the simulator: on a thread bound to the kernel).
pub struct FileHandle<R: PendingWait> {
    pub(crate) core: PoolArc<HandleCore<R>>,
}

pub(crate) struct HandleCore<R: PendingWait> {
    pub(crate) serial: u32,
    pub(crate) state: SpinLock<HandleState<R>>,
}

pub(crate) struct HandleState<R: PendingWait> {
    /// Set by cleanup/unload: every later request is refused with `STATUS_CANCELLED`.
    pub(crate) closing: bool,
    pub(crate) table: SlotTable,
    /// Indexed by slot. Room for every slot is reserved at open; the vector grows inside that
    /// reservation as slots are first used (see [`HandleState::place`]), so an open does not
    /// write, and a teardown does not scan, the slots a handle never used.
    pub(crate) timers: Vec<Option<TimerEntry<Expiry<R>>>>,
    pub(crate) ring: EventRing,
    pub(crate) waits: WaitList<R>,
    /// DPC runs of this handle's timers that were counted (each pushed one record into the
    /// ring, or one overrun).
    pub(crate) counted_runs: u64,
}

/// What a timer's DPC calls: the handle, and which slot and generation the timer is.
pub(crate) struct Expiry<R: PendingWait> {
    pub(crate) handle: PoolArc<HandleCore<R>>,
    pub(crate) slot: u16,
    pub(crate) generation: u32,
}
