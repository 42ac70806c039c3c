//! The handle registry: the service's life (created at driver load, unloaded before the
//! device goes away) and its open handles (open, cleanup, close). `PASSIVE_LEVEL`.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use ktimer_abi::MAX_PERIOD_MS;
use ktimer_abi::status::{
    NtStatus, STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_QUOTA_EXCEEDED,
};

use crate::config::ServiceConfig;
use crate::ids::{MAX_SLOTS, SlotTable};
use crate::ring::EventRing;
use crate::state::{FileHandle, HandleCore, HandleState, Registry, Service};
use crate::waits::{PendingWait, WaitList};
use ktimer_kernel::deferred::reclaim_deferred;
use ktimer_kernel::irql::PassiveLevel;
use ktimer_kernel::pool::PoolArc;
use ktimer_kernel::spin_lock::SpinLock;

impl<R: PendingWait> Service<R> {
    /// Creates the service (driver load). `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER` for a config outside the ABI's ranges;
    /// `STATUS_INSUFFICIENT_RESOURCES` if the registry cannot be allocated.
    pub fn new(config: ServiceConfig, _passive: &PassiveLevel) -> Result<Self, NtStatus> {
        let valid = config.max_timers_per_handle <= MAX_SLOTS
            && config.event_ring_capacity >= 1
            && u32::try_from(config.event_ring_capacity).is_ok()
            && u32::try_from(config.max_pending_waits_per_handle).is_ok()
            && config.min_period_ms >= 1
            && config.min_period_ms <= MAX_PERIOD_MS.unsigned_abs();
        if !valid {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let mut handles = Vec::new();
        handles
            .try_reserve_exact(config.max_handles)
            .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
        handles.resize_with(config.max_handles, || None);
        Ok(Self {
            config,
            registry: SpinLock::new(Registry {
                handles,
                unloading: false,
            }),
            next_serial: AtomicU32::new(1),
        })
    }

    /// The limits in force.
    #[must_use]
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Handles open (opened and not yet closed, nor torn down by unload). Any IRQL
    /// `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn open_handle_count(&self) -> usize {
        self.registry
            .lock()
            .handles
            .iter()
            .filter(|entry| entry.is_some())
            .count()
    }

    /// Opens a handle (KMDF: `EvtDeviceFileCreate`). `PASSIVE_LEVEL`: allocates everything
    /// the handle will need except its timers.
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` (allocation failed, or handle serials exhausted),
    /// `STATUS_QUOTA_EXCEEDED` (`max_handles` open), `STATUS_CANCELLED` (unloading).
    pub fn open(&self, _passive: &PassiveLevel) -> Result<FileHandle<R>, NtStatus> {
        let serial = self
            .next_serial
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |serial| {
                serial.checked_add(1)
            })
            .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
        let capacity = self.config.max_timers_per_handle;
        let table = SlotTable::new(serial, capacity).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
        let ring =
            EventRing::new(self.config.event_ring_capacity).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
        let waits = WaitList::new(self.config.max_pending_waits_per_handle)
            .ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
        let mut timers = Vec::new();
        timers
            .try_reserve_exact(capacity)
            .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
        let core = PoolArc::new(
            HandleCore {
                serial,
                state: SpinLock::new(HandleState {
                    closing: false,
                    table,
                    timers,
                    ring,
                    waits,
                    counted_runs: 0,
                }),
            },
            self.config.pool_tag,
        )
        .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;

        let mut registry = self.registry.lock();
        if registry.unloading {
            return Err(STATUS_CANCELLED);
        }
        let Some(entry) = registry.handles.iter_mut().find(|entry| entry.is_none()) else {
            return Err(STATUS_QUOTA_EXCEEDED);
        };
        *entry = Some(PoolArc::clone(&core));
        Ok(FileHandle { core })
    }

    /// Handle cleanup (KMDF: `EvtFileCleanup`; `CloseHandle`): refuses further requests,
    /// completes the pending waits with `STATUS_CANCELLED`, destroys the handle's timers and
    /// frees their storage. Idempotent. `PASSIVE_LEVEL`.
    pub fn cleanup(&self, file: &FileHandle<R>, passive: &PassiveLevel) {
        file.core.tear_down(passive);
    }

    /// Handle close (KMDF: `EvtFileClose`): cleans up if that has not happened and forgets
    /// the handle. `PASSIVE_LEVEL`.
    pub fn close(&self, file: FileHandle<R>, passive: &PassiveLevel) {
        let FileHandle { core } = file;
        core.tear_down(passive);
        let mut registry = self.registry.lock();
        if let Some(entry) = registry.handles.iter_mut().find(|entry| {
            entry
                .as_ref()
                .is_some_and(|held| PoolArc::ptr_eq(held, &core))
        }) {
            // Dropped after the lock is released (below), not under it.
            let removed = entry.take();
            drop(registry);
            drop(removed);
        }
    }

    /// Driver unload (KMDF: the device's `EvtCleanupCallback`, before the device goes away):
    /// refuses new handles, tears down every open handle (its waits completed with
    /// `STATUS_CANCELLED`, its timers destroyed) and frees every timer's storage before
    /// returning. Handles the front end still holds stay valid objects that refuse every
    /// request. `PASSIVE_LEVEL`.
    pub fn unload(&self, passive: &PassiveLevel) {
        let count = {
            let mut registry = self.registry.lock();
            registry.unloading = true;
            registry.handles.len()
        };
        for index in 0..count {
            let taken = self
                .registry
                .lock()
                .handles
                .get_mut(index)
                .and_then(Option::take);
            if let Some(core) = taken {
                core.tear_down(passive);
            }
        }
        let _freed = reclaim_deferred(passive);
    }
}
