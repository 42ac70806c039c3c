//! The timer service: open handles, the timers each owns, their event rings and pending
//! waits. Portable: it reaches the kernel only through the safe kernel layer.
//!
//! Ownership: the [`Service`] keeps a registry of open handles ([`FileHandle`]); a handle's
//! spin-locked state holds its id table, its timers (kernel timer + schedule + statistics),
//! its event ring and its pending waits. Each timer's callback holds the handle (a shared
//! [`PoolArc`]), so
//! the expiry path reaches the ring and the waits without a lookup; handle cleanup and unload
//! break that cycle by destroying the timers.
//!
//! Allocation happens only at `PASSIVE_LEVEL`: when the service is created, when a handle is
//! opened (id table, ring, wait list, all at their limits) and when a timer is created (its
//! kernel storage). The expiry path (`DISPATCH_LEVEL`) allocates nothing: it updates the
//! timer's statistics, pushes one record into the ring and completes satisfied waits
//! (`driver/kmdf/tests/service_no_allocation.rs` counts). Every allocation is fallible and maps to
//! `STATUS_INSUFFICIENT_RESOURCES`, the handle's shared core included: it is a [`PoolArc`]
//! (pool block + owner count), because stable Rust has no fallible `Arc::new` and an
//! infallible allocation's failure would reach the allocation-error handler.
//!
//! Locks: the registry lock and a handle's lock are never held together, and nothing is
//! completed while a lock is held. A timer dropped under a handle's lock (cleanup) is only
//! stopped there; the safe kernel layer defers its flush and free to `reclaim_deferred`, which
//! cleanup and unload call at `PASSIVE_LEVEL` after releasing the lock.
//!
//! The service answers with values: each operation returns its typed response or the status
//! to fail with, and never encodes a response or completes a request. The IOCTL dispatcher
//! ([`dispatch`], in this crate, above the service) decodes, validates, calls the service,
//! encodes and completes. The one request the service completes itself is a wait it parked,
//! later, through the narrow port [`waits::PendingWait`].
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod dispatch;

pub mod ids;
pub mod ring;
pub mod stats;
pub mod timer_entry;
pub mod waits;

use alloc::vec::Vec;
use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicU32, Ordering};

use ktimer_abi::status::{
    NtStatus, STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_QUOTA_EXCEEDED,
};
use ktimer_abi::{
    ArmResponse, CREATE_HIGH_RESOLUTION, CreateRequest, CreateResponse, ExpiryRecord, Header,
    InfoResponse, MAX_PERIOD_MS, MAX_RELATIVE_DUE_100NS, MAX_TOLERABLE_DELAY_MS, MODE_ONE_SHOT,
    QueryResponse, STATE_ARMED, STATE_EXPIRED, Schedule, SetRequest, TIMER_TYPE_SYNCHRONIZATION,
    TimerRequest,
};

use self::ids::{MAX_SLOTS, SlotTable};
use self::ring::EventRing;
use self::stats::{Arming, Stats};
use self::timer_entry::{KernelTimer, Prepared, TimerEntry};
use self::waits::{Parking, PendingWait, WaitList, WaitLock, WaitState};
use ktimer_kernel::clock;
use ktimer_kernel::deferred::{flush_queued_dpcs, reclaim_deferred};
use ktimer_kernel::hr_timer::HighResolutionTimer;
use ktimer_kernel::irql::{DispatchLevel, PassiveLevel};
use ktimer_kernel::pool::{PoolArc, PoolTag};
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::timer::{Timer, TimerCallback, TimerKind};

/// The driver's version, reported by get-info.
pub const DRIVER_VERSION: (u16, u16, u16) = (0, 1, 0);

/// Pool tag of the service's kernel timers (`KTsv`).
pub const POOL_TAG: PoolTag = PoolTag::new(*b"KTsv");

/// The service's limits. [`Default`] is what the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Handles open at once.
    pub max_handles: usize,
    /// Live timers per handle (at most 4,095, the id format's slot count).
    pub max_timers_per_handle: usize,
    /// Pending waits per handle.
    pub max_pending_waits_per_handle: usize,
    /// Records per handle's event ring.
    pub event_ring_capacity: usize,
    /// The smallest period accepted, in milliseconds (at least 1). With the timer limit it
    /// bounds the DPC rate one handle can cause.
    pub min_period_ms: u32,
    /// Pool tag of the kernel timers.
    pub pool_tag: PoolTag,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_handles: 64,
            max_timers_per_handle: 1024,
            max_pending_waits_per_handle: 16,
            event_ring_capacity: 4096,
            min_period_ms: 1,
            pool_tag: POOL_TAG,
        }
    }
}

/// The timer service, generic over the request type of its pending waits (the
/// [`PendingWait`] port; the dispatcher's [`dispatch::Pended`]).
pub struct Service<R: PendingWait> {
    config: ServiceConfig,
    registry: SpinLock<Registry<R>>,
    next_serial: AtomicU32,
}

struct Registry<R: PendingWait> {
    handles: Vec<Option<PoolArc<HandleCore<R>>>>,
    unloading: bool,
}

/// An open handle, as the front end keeps it (in the file object's context; see
/// [`FileHandle::into_raw`]). Its core is a pool block shared with the service's registry
/// and the handle's timers; dropping the last owner frees it, so drop it at IRQL <=
/// `DISPATCH_LEVEL` (on the simulator: on a thread bound to the kernel).
pub struct FileHandle<R: PendingWait> {
    core: PoolArc<HandleCore<R>>,
}

struct HandleCore<R: PendingWait> {
    serial: u32,
    state: SpinLock<HandleState<R>>,
}

struct HandleState<R: PendingWait> {
    /// Set by cleanup/unload: every later request is refused with `STATUS_CANCELLED`.
    closing: bool,
    table: SlotTable,
    /// Indexed by slot. Room for every slot is reserved at open; the vector grows inside that
    /// reservation as slots are first used (see [`HandleState::place`]), so an open does not
    /// write, and a teardown does not scan, the slots a handle never used.
    timers: Vec<Option<TimerEntry<Expiry<R>>>>,
    ring: EventRing,
    waits: WaitList<R>,
    /// DPC runs of this handle's timers that were counted (each pushed one record into the
    /// ring, or one overrun).
    counted_runs: u64,
}

/// What a timer's DPC calls: the handle, and which slot and generation the timer is.
struct Expiry<R: PendingWait> {
    handle: PoolArc<HandleCore<R>>,
    slot: u16,
    generation: u32,
}

impl<R: PendingWait> TimerCallback for Expiry<R> {
    fn expired(&self, irql: &DispatchLevel) {
        self.handle.on_expiry(self.slot, self.generation, irql);
    }
}

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

    /// Get-info on a handle: the [`Service::info`] response, unless the handle is closing.
    /// `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_CANCELLED` once the handle's cleanup has begun.
    pub fn get_info(&self, file: &FileHandle<R>) -> Result<InfoResponse, NtStatus> {
        if file.core.state.lock().closing {
            Err(STATUS_CANCELLED)
        } else {
            Ok(self.info())
        }
    }

    /// Validates a create's or set's schedule against the driver's minimum period and
    /// clock (step 5 of the order in `docs/PROTOCOL.md`, before the output size is
    /// checked). `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER` for a schedule out of range.
    pub fn prepare(&self, schedule: Schedule) -> Result<Prepared, NtStatus> {
        Prepared::new(schedule, self.config.min_period_ms)
    }

    /// The get-info response. Any IRQL `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn info(&self) -> InfoResponse {
        let (major, minor, patch) = DRIVER_VERSION;
        let clock_increment = clock::time_increment().as_hundred_ns();
        InfoResponse {
            header: Header::of::<InfoResponse>(),
            driver_version_major: major,
            driver_version_minor: minor,
            driver_version_patch: patch,
            reserved: 0,
            clock_increment: u32::try_from(clock_increment).unwrap_or(u32::MAX),
            max_timers_per_handle: u32::try_from(self.config.max_timers_per_handle)
                .unwrap_or(u32::MAX),
            max_pending_waits_per_handle: u32::try_from(self.config.max_pending_waits_per_handle)
                .unwrap_or(u32::MAX),
            event_ring_capacity: u32::try_from(self.config.event_ring_capacity).unwrap_or(u32::MAX),
            min_period_ms: self.config.min_period_ms,
            max_period_ms: MAX_PERIOD_MS.unsigned_abs(),
            max_tolerable_delay_ms: MAX_TOLERABLE_DELAY_MS,
            padding: 0,
            max_relative_due: MAX_RELATIVE_DUE_100NS,
            interrupt_time: clock::interrupt_time().as_hundred_ns(),
            system_time: i64::try_from(clock::system_time().as_hundred_ns_since_1601())
                .unwrap_or(i64::MAX),
        }
    }

    /// Create: allocate an id and a kernel timer, then arm it with `prepared` (the
    /// request's schedule, from [`Service::prepare`]). `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The documented create statuses of step 7 (`docs/PROTOCOL.md`).
    pub fn create(
        &self,
        file: &FileHandle<R>,
        request: &CreateRequest,
        prepared: &Prepared,
    ) -> Result<CreateResponse, NtStatus> {
        let core = &file.core;
        let id = {
            let mut state = core.state.lock();
            if state.closing {
                return Err(STATUS_CANCELLED);
            }
            match state.table.allocate() {
                Some(id) => id,
                // Closing a live timer makes room (its slot has ids left): the caller's
                // quota, freed by closing one.
                None if state.table.a_live_slot_can_be_reissued() => {
                    return Err(STATUS_QUOTA_EXCEEDED);
                }
                // Every free slot is retired (its ids used up) and no live timer's slot could
                // be reissued: closing timers does not help, an exhausted resource.
                None => return Err(STATUS_INSUFFICIENT_RESOURCES),
            }
        };
        let callback = Expiry {
            handle: PoolArc::clone(core),
            slot: id.slot,
            generation: id.generation,
        };
        let timer = if request.flags & CREATE_HIGH_RESOLUTION == 0 {
            let kind = if request.timer_type == TIMER_TYPE_SYNCHRONIZATION {
                TimerKind::Synchronization
            } else {
                TimerKind::Notification
            };
            Timer::new(kind, callback, self.config.pool_tag).map(KernelTimer::Standard)
        } else {
            HighResolutionTimer::new(callback, self.config.pool_tag)
                .map(KernelTimer::HighResolution)
        };
        let Ok(timer) = timer else {
            core.state.lock().table.release(id.slot);
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        };
        let entry = TimerEntry {
            timer,
            generation: id.generation,
            timer_type: request.timer_type,
            flags: request.flags,
            schedule: request.schedule,
            arming: Arming::relative(0, 0, 0, 0),
            stats: Stats::default(),
            state: STATE_ARMED,
            arming_generation: 0,
        };

        let mut state = core.state.lock();
        let failure = if state.closing {
            Some((Some(entry), STATUS_CANCELLED))
        } else if let Some(place) = state.place(id.slot) {
            // Armed under the lock, so the expiry path cannot see the entry before it is.
            match place.insert(entry).arm(prepared) {
                Ok(_) => None,
                Err(status) => Some((place.take(), status)),
            }
        } else {
            Some((Some(entry), STATUS_INSUFFICIENT_RESOURCES))
        };
        if let Some((entry, status)) = failure {
            state.table.release(id.slot);
            drop(state);
            // Outside the lock, at PASSIVE_LEVEL: the timer is torn down synchronously.
            drop(entry);
            return Err(status);
        }
        drop(state);
        Ok(CreateResponse {
            header: Header::of::<CreateResponse>(),
            timer_id: id.to_raw(),
        })
    }

    /// Set: re-arm an existing timer. `PASSIVE_LEVEL`.
    ///
    /// `KeSetTimerEx` does not dequeue a DPC the previous arming already queued, and the DPC
    /// carries nothing that says which arming queued it. So a re-arm first stops the kernel
    /// timer, then waits for every queued and running DPC (`KeFlushQueuedDpcs`): a run the
    /// previous arming queued happens now, counted and recorded for that arming, and none can
    /// reach the new one. If another request armed or cancelled the timer while this one
    /// waited (its arming generation moved), the stop and the wait are repeated, so the
    /// arming that wins is never exposed to a DPC queued before it.
    ///
    /// # Errors
    /// The documented set statuses of step 7 (`docs/PROTOCOL.md`).
    pub fn set(
        &self,
        file: &FileHandle<R>,
        request: &SetRequest,
        prepared: &Prepared,
        passive: &PassiveLevel,
    ) -> Result<ArmResponse, NtStatus> {
        let mut was_armed = None;
        loop {
            let generation = {
                let mut state = file.core.state.lock();
                let entry = state.entry_mut(request.timer_id)?;
                // Refused before the timer is stopped, so a refused request changes nothing.
                if entry.refuses(prepared) {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                let stopped = entry.stop();
                // What the caller is told: whether the timer was set when the request came.
                was_armed.get_or_insert(stopped);
                entry.arming_generation
            };
            // Only `false` if the caller raised the IRQL after minting `passive`, which
            // dispatch (PASSIVE_LEVEL by contract) does not do.
            let _flushed = flush_queued_dpcs(passive);
            let mut state = file.core.state.lock();
            let entry = state.entry_mut(request.timer_id)?;
            if entry.arming_generation != generation {
                continue;
            }
            entry.arm(prepared)?;
            break;
        }
        Ok(arm_response(was_armed.unwrap_or(false)))
    }

    /// Cancel a timer. `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// The id statuses, or `STATUS_CANCELLED` (handle closing).
    pub fn cancel(
        &self,
        file: &FileHandle<R>,
        request: &TimerRequest,
    ) -> Result<ArmResponse, NtStatus> {
        file.core.cancel_timer(request)
    }

    /// Query a timer. `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// The id statuses, or `STATUS_CANCELLED` (handle closing).
    pub fn query(
        &self,
        file: &FileHandle<R>,
        request: &TimerRequest,
    ) -> Result<QueryResponse, NtStatus> {
        file.core.query(request)
    }

    /// Close a timer: its id becomes stale, the kernel timer is torn down. `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The id statuses, or `STATUS_CANCELLED` (handle closing).
    pub fn close_timer(
        &self,
        file: &FileHandle<R>,
        request: &TimerRequest,
    ) -> Result<(), NtStatus> {
        file.core.close_timer(request)
    }

    /// A wait for `min_records` records (at least 1; the dispatcher has checked that they fit
    /// the request's output and the ring): answered at once from the ring, refused, or parked
    /// until the expiry path, the cancel path ([`Service::cancel_wait`]), cleanup or unload
    /// completes it through its [`PendingWait`] port (the claim protocol: [`waits`]).
    /// `<= DISPATCH_LEVEL`.
    pub fn wait(&self, file: &FileHandle<R>, min_records: usize, request: R) -> Parking<R> {
        waits::park(&file.core.locked(), request, min_records)
    }

    /// The front end's cancel routine for a pending wait (KMDF: `EvtRequestCancel`). Returns
    /// the request if it was still parked; the caller completes it with `STATUS_CANCELLED`.
    /// `None` means the service already removed it and its claim fails: the service drops
    /// its `R` uncompleted, and the front end completes the request with `STATUS_CANCELLED`
    /// once both sides have let go of it (the KMDF shell: its two-release hand-off; see
    /// [`waits`]). `<= DISPATCH_LEVEL`.
    pub fn cancel_wait(&self, file: &FileHandle<R>, key: usize) -> Option<R> {
        waits::cancel(&file.core.locked(), key)
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

/// The set/cancel response.
fn arm_response(was_armed: bool) -> ArmResponse {
    ArmResponse {
        header: Header::of::<ArmResponse>(),
        was_armed: u32::from(was_armed),
        reserved: 0,
    }
}

impl<R: PendingWait> HandleState<R> {
    /// The place of a slot's timer, growing the table up to it if the slot is used for the
    /// first time. `None` past the reservation made at open: it never allocates. Any IRQL.
    fn place(&mut self, slot: u16) -> Option<&mut Option<TimerEntry<Expiry<R>>>> {
        let index = usize::from(slot);
        if index >= self.timers.len() {
            if index >= self.timers.capacity() {
                return None;
            }
            self.timers.resize_with(index + 1, || None);
        }
        self.timers.get_mut(index)
    }

    /// The slot of the live timer an id names, unless the handle is closing.
    fn live_slot(&self, raw_id: u64) -> Result<u16, NtStatus> {
        if self.closing {
            return Err(STATUS_CANCELLED);
        }
        self.table.lookup(raw_id).map_err(ids::IdError::status)
    }

    /// The live timer an id names, unless the handle is closing.
    fn entry_mut(&mut self, raw_id: u64) -> Result<&mut TimerEntry<Expiry<R>>, NtStatus> {
        let slot = self.live_slot(raw_id)?;
        // A live id's slot always holds its entry; `STATUS_NOT_FOUND` keeps this total.
        self.timers
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut)
            .ok_or(ktimer_abi::status::STATUS_NOT_FOUND)
    }
}

impl<R: PendingWait> HandleCore<R> {
    /// Cancel: `<= DISPATCH_LEVEL`.
    fn cancel_timer(&self, request: &TimerRequest) -> Result<ArmResponse, NtStatus> {
        let was_armed = self.state.lock().entry_mut(request.timer_id)?.cancel();
        Ok(arm_response(was_armed))
    }

    /// Query: `<= DISPATCH_LEVEL`.
    fn query(&self, request: &TimerRequest) -> Result<QueryResponse, NtStatus> {
        let mut state = self.state.lock();
        Ok(state.entry_mut(request.timer_id)?.query(request.timer_id))
    }

    /// Close a timer: its id becomes stale, the kernel timer is torn down. `PASSIVE_LEVEL`
    /// (the drop outside the lock waits for a running DPC and frees the storage).
    fn close_timer(&self, request: &TimerRequest) -> Result<(), NtStatus> {
        let entry = {
            let mut state = self.state.lock();
            let slot = state.live_slot(request.timer_id)?;
            state.table.release(slot);
            state
                .timers
                .get_mut(usize::from(slot))
                .and_then(Option::take)
        };
        drop(entry);
        Ok(())
    }

    /// The expiry path: a timer's DPC (`DISPATCH_LEVEL`). Counts the run, records it, and
    /// completes the waits it satisfies. No allocation.
    fn on_expiry(&self, slot: u16, generation: u32, irql: &DispatchLevel) {
        let waiters = {
            let mut guard = self.state.lock_at_dpc(irql);
            // The clocks are read under the lock: two runs of one timer overlapping on two
            // processors are counted in the order they take it, each with a later reading.
            let now =
                i64::try_from(clock::interrupt_time_precise().as_hundred_ns()).unwrap_or(i64::MAX);
            let tick_now =
                i64::try_from(clock::interrupt_time().as_hundred_ns()).unwrap_or(i64::MAX);
            let state = &mut *guard;
            if state.closing {
                return;
            }
            let Some(Some(entry)) = state.timers.get_mut(usize::from(slot)) else {
                return;
            };
            // A run for a closed timer's slot, or one queued before a cancel: not counted.
            // (A run queued before a re-arm cannot come here: `Service::set` waits for it.)
            if entry.generation != generation || entry.state != STATE_ARMED {
                return;
            }
            entry.arming.date_first_run(tick_now, || {
                i64::try_from(clock::system_time().as_hundred_ns_since_1601())
                    .unwrap_or(i64::MAX)
                    .saturating_sub(now)
            });
            let Some(run) = entry.stats.record_run(&entry.arming, now, tick_now) else {
                return;
            };
            if entry.schedule.mode == MODE_ONE_SHOT {
                entry.state = STATE_EXPIRED;
            }
            let timer_id = ids::TimerId {
                serial: self.serial,
                generation,
                slot,
            }
            .to_raw();
            state.counted_runs = state.counted_runs.saturating_add(1);
            state.ring.push(ExpiryRecord {
                timer_id,
                sequence: run.sequence,
                due_time: run.due,
                fire_time: now,
                lateness: run.lateness,
                // Saturated at `EXPIRATIONS_SATURATED` (docs/PROTOCOL.md); `sequence` and
                // query's count are exact.
                expirations: u32::try_from(run.covered)
                    .unwrap_or(ktimer_abi::EXPIRATIONS_SATURATED),
                reserved: 0,
            });
            !state.waits.is_empty()
        };
        // Without parked waits there is nothing to complete: no second lock.
        if waiters {
            self.complete_ready_waits(irql);
        }
    }

    /// Completes, oldest first, every parked wait the ring's records satisfy
    /// ([`waits::complete_ready`]). `DISPATCH_LEVEL`; no allocation.
    fn complete_ready_waits(&self, irql: &DispatchLevel) {
        waits::complete_ready(&AtDpc {
            state: &self.state,
            irql,
        });
    }

    /// The handle's lock for the wait protocol, taken raising to `DISPATCH_LEVEL`.
    fn locked(&self) -> Raising<'_, R> {
        Raising { state: &self.state }
    }

    /// Cleanup: refuse new requests, destroy the timers, cancel the waits. `PASSIVE_LEVEL`.
    fn tear_down(&self, passive: &PassiveLevel) {
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
fn wait_state<R: PendingWait>(state: &mut HandleState<R>) -> WaitState<'_, R> {
    WaitState {
        closing: state.closing,
        ring: &mut state.ring,
        waits: &mut state.waits,
    }
}

/// A handle's lock for the wait protocol, acquired raising the IRQL (any IRQL
/// `<= DISPATCH_LEVEL`).
struct Raising<'a, R: PendingWait> {
    state: &'a SpinLock<HandleState<R>>,
}

impl<R: PendingWait> WaitLock<R> for Raising<'_, R> {
    fn with<T>(&self, f: impl FnOnce(WaitState<'_, R>) -> T) -> T {
        f(wait_state(&mut self.state.lock()))
    }
}

/// A handle's lock for the wait protocol, acquired at `DISPATCH_LEVEL` (the expiry path).
struct AtDpc<'a, R: PendingWait> {
    state: &'a SpinLock<HandleState<R>>,
    irql: &'a DispatchLevel,
}

impl<R: PendingWait> WaitLock<R> for AtDpc<'_, R> {
    fn with<T>(&self, f: impl FnOnce(WaitState<'_, R>) -> T) -> T {
        f(wait_state(&mut self.state.lock_at_dpc(self.irql)))
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
    /// generation `generation` ([`SlotTable::skip_to_generation`]). `<= DISPATCH_LEVEL`.
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
