//! Per-handle operations: what each IOCTL does to a handle's timers and waits, returning
//! its typed response or a status (the dispatcher decodes, encodes and completes).

use ktimer_abi::status::{
    NtStatus, STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_QUOTA_EXCEEDED,
};
use ktimer_abi::{
    ArmResponse, CREATE_HIGH_RESOLUTION, CreateRequest, CreateResponse, Header, InfoResponse,
    MAX_PERIOD_MS, MAX_RELATIVE_DUE_100NS, MAX_TOLERABLE_DELAY_MS, QueryResponse, STATE_ARMED,
    Schedule, SetRequest, TIMER_TYPE_SYNCHRONIZATION, TimerRequest,
};

use crate::config::DRIVER_VERSION;
use crate::ids;
use crate::state::{Expiry, FileHandle, HandleCore, HandleState, Service};
use crate::stats::{Arming, Stats};
use crate::timer_entry::{KernelTimer, Prepared, TimerEntry};
use crate::waits;
use crate::waits::{Parking, PendingWait};
use ktimer_kernel::clock;
use ktimer_kernel::deferred::flush_queued_dpcs;
use ktimer_kernel::hr_timer::HighResolutionTimer;
use ktimer_kernel::irql::PassiveLevel;
use ktimer_kernel::pool::PoolArc;
use ktimer_kernel::timer::{Timer, TimerKind};

impl<R: PendingWait> Service<R> {
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
}
