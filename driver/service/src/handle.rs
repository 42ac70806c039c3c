//! An open handle: the front end's [`FileHandle`] (one pointer in a file object's
//! context), its lock for the wait protocol, and its teardown.

use core::ffi::c_void;
use core::mem::ManuallyDrop;

use crate::state::{FileHandle, HandleCore, HandleState};
use crate::waits;
use crate::waits::{PendingWait, WaitLock, WaitState};
use ktimer_kernel::deferred::reclaim_deferred;
use ktimer_kernel::irql::PassiveLevel;
use ktimer_kernel::pool::PoolArc;
use ktimer_kernel::spin_lock::SpinLock;

impl<R: PendingWait> HandleCore<R> {
    /// The handle's lock for the wait protocol, taken raising to `DISPATCH_LEVEL`.
    pub(crate) fn locked(&self) -> Raising<'_, R> {
        Raising { state: &self.state }
    }

    /// Cleanup: refuse new requests, destroy the timers, cancel the waits. `PASSIVE_LEVEL`.
    pub(crate) fn tear_down(&self, passive: &PassiveLevel) {
        {
            let mut state = self.state.lock();
            state.closing = true;
            state.ring.clear();
            let HandleState { table, timers, .. } = &mut *state;
            for (index, place) in timers.iter_mut().enumerate() {
                if let Some(entry) = place.take() {
                    if let Ok(slot) = u16::try_from(index) {
                        table.release(slot);
                    }
                    // Dropped under the lock (DISPATCH_LEVEL): the timer layer stops it at
                    // once and parks its storage; `reclaim_deferred` below frees all of them
                    // after one DPC flush.
                    drop(entry);
                }
            }
        }
        waits::cancel_all(&self.locked());
        let _freed = reclaim_deferred(passive);
    }
}

/// The wait part of a handle's state, borrowed under its lock.
pub(crate) fn wait_state<R: PendingWait>(state: &mut HandleState<R>) -> WaitState<'_, R> {
    WaitState {
        closing: state.closing,
        ring: &mut state.ring,
        waits: &mut state.waits,
    }
}

/// A handle's lock for the wait protocol, acquired raising the IRQL (any IRQL
/// `<= DISPATCH_LEVEL`).
pub(crate) struct Raising<'a, R: PendingWait> {
    state: &'a SpinLock<HandleState<R>>,
}

impl<R: PendingWait> WaitLock<R> for Raising<'_, R> {
    fn with<T>(&self, f: impl FnOnce(WaitState<'_, R>) -> T) -> T {
        f(wait_state(&mut self.state.lock()))
    }
}

impl<R: PendingWait> FileHandle<R> {
    /// The handle as one pointer-sized value for the front end's file-object context. The
    /// handle is kept alive until [`FileHandle::from_raw`] takes it back. Any IRQL.
    #[must_use]
    pub fn into_raw(self) -> *mut c_void {
        PoolArc::into_raw(self.core)
    }

    /// Takes back a handle stored with [`FileHandle::into_raw`] (KMDF: in `EvtFileClose`).
    /// Any IRQL.
    ///
    /// # Safety
    /// `raw` came from [`FileHandle::into_raw`] of a `FileHandle<R>` (same `R`) and has not
    /// been taken back yet; it must not be used again afterwards.
    #[must_use]
    pub unsafe fn from_raw(raw: *mut c_void) -> Self {
        // SAFETY: per the contract, `raw` is a `PoolArc::into_raw` pointer of a
        // `PoolArc<HandleCore<R>>` whose owner this call takes back exactly once.
        let core = unsafe { PoolArc::from_raw(raw) };
        Self { core }
    }

    /// Borrows a handle stored with [`FileHandle::into_raw`] without taking it back (KMDF: in
    /// `EvtIoDeviceControl`, the cancel routine, `EvtFileCleanup`). Any IRQL.
    ///
    /// # Safety
    /// `raw` came from [`FileHandle::into_raw`] of a `FileHandle<R>` (same `R`) and is not
    /// taken back with [`FileHandle::from_raw`] while the returned value is in use; the
    /// returned value is only borrowed from (never `ManuallyDrop::into_inner`ed or dropped
    /// through `ManuallyDrop::drop`), so the stored reference stays the only owner.
    #[must_use]
    pub unsafe fn borrow_raw(raw: *mut c_void) -> ManuallyDrop<Self> {
        // SAFETY: forwarded contract; `ManuallyDrop` keeps the stored reference count as it is.
        ManuallyDrop::new(unsafe { Self::from_raw(raw) })
    }

    /// The handle's serial (the high 32 bits of every timer id it issues).
    #[must_use]
    pub fn serial(&self) -> u32 {
        self.core.serial
    }

    /// Live timers of this handle. `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn timer_count(&self) -> usize {
        self.core.state.lock().table.live_count()
    }

    /// Records waiting in this handle's ring. `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn ready_records(&self) -> usize {
        self.core.state.lock().ring.len()
    }

    /// Waits parked on this handle. `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn pending_waits(&self) -> usize {
        self.core.state.lock().waits.len()
    }

    /// Read together under the handle's lock: DPC runs counted since the handle opened,
    /// records in the ring, overruns not yet reported. Every counted run is one record
    /// delivered by a wait, one overrun (reported or not), or one record still in the ring.
    /// `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn accounting(&self) -> (u64, usize, u64) {
        let state = self.core.state.lock();
        (state.counted_runs, state.ring.len(), state.ring.overruns())
    }

    /// Test hook of the simulator build: moves this handle's free timer slots forward to id
    /// generation `generation` ([`SlotTable::skip_to_generation`](crate::ids::SlotTable::skip_to_generation)). `<= DISPATCH_LEVEL`.
    #[cfg(not(windows))]
    pub fn skip_timer_id_generations(&self, generation: u32) {
        self.core.state.lock().table.skip_to_generation(generation);
    }
}

impl<R: PendingWait> Clone for FileHandle<R> {
    fn clone(&self) -> Self {
        Self {
            core: PoolArc::clone(&self.core),
        }
    }
}
