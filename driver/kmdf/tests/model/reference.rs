//! The reference model: what the documentation says happens, computed without the driver.
//!
//! Two halves, each small and written from its document:
//! - the kernel (`../shared/kernel-timer-semantics.md`, and the simulator's documented
//!   choices in docs/SIMULATOR.md): timers expire on clock ticks, in due order, once per tick
//!   however many due times passed; a relative due time is interrupt time counted from the
//!   last tick, an absolute one is system time and follows clock changes until it expires
//!   (a past one expires at the next tick); later periods of a periodic timer are intervals;
//!   a DPC object is queued at most once, runs in queuing order (one processor), and
//!   `KeSetTimerEx` / `KeCancelTimer` do not dequeue it; `KeFlushQueuedDpcs` runs everything
//!   queued. Its expiries are compared with kernel-sim's own (`Kernel::take_expiries`).
//! - the service (docs/PROTOCOL.md): states, records, the ring and its overruns, waits and
//!   their completion, statuses, and when the service flushes DPCs. A run's expiration
//!   count is **the kernel's**: the number of expiries of the arming so far, and the record's
//!   due time is the latest due time the last of them covered. Only where PROTOCOL.md says
//!   the driver cannot know (an absolute arming whose clock moved before its first run) does
//!   the model apply the documented conservative rule, and even then a count above the
//!   kernel's is reported as a violation.
//!
//! Times are 100 ns units. `now` is the precise interrupt time, `last_tick` the interrupt
//! time of the last clock tick; system time is `offset + now`.

use std::collections::{BTreeMap, VecDeque};

use ktimer_abi::status::{
    NtStatus, STATUS_CANCELLED, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND,
    STATUS_QUOTA_EXCEEDED, STATUS_SUCCESS,
};
use ktimer_abi::{
    ExpiryRecord, MODE_PERIODIC, QueryResponse, SCHEDULE_ABSOLUTE, STATE_ARMED, STATE_CANCELLED,
    STATE_EXPIRED, Schedule,
};

/// A kernel due time in one of the two time bases.
#[derive(Clone, Copy, Debug)]
enum KernelDue {
    Interrupt(i64),
    System(i64),
}

impl KernelDue {
    fn interrupt(self, offset: i64) -> i64 {
        match self {
            Self::Interrupt(at) => at,
            Self::System(at) => at - offset,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct KernelSetting {
    base: KernelDue,
    period: i64,
    seq: u64,
}

/// One timer: the kernel's view and the service's.
#[derive(Clone, Debug)]
#[allow(
    clippy::struct_excessive_bools,
    clippy::struct_field_names,
    reason = "a flat record of the kernel's and the service's state, named as the ABI names them"
)]
struct Timer {
    handle: usize,
    timer_type: u32,
    // The kernel.
    set: Option<KernelSetting>,
    signaled: bool,
    dpc_queued: bool,
    /// The kernel's expiries of the current arming: (tick, latest due time covered).
    kernel_expiries: Vec<(i64, i64)>,
    // The service.
    schedule: Schedule,
    state: u32,
    first_due: i64,
    /// An absolute arming's system due time, until its first run dates it in interrupt time.
    absolute_due: Option<i64>,
    period: i64,
    expirations: u64,
    dpc_runs: u64,
    lateness_last: i64,
    lateness_min: i64,
    lateness_max: i64,
    lateness_sum: i128,
    /// The last tick when armed, and the system clock's offset then.
    armed_tick: i64,
    offset_at_arming: i64,
    /// System-clock changes since the arming (an absolute arming is exact only without).
    clock_changes: u32,
    /// PROTOCOL.md's conservative count after an absolute arming's first run found the
    /// clock moved since arming: the tick of that run.
    counted_from: Option<i64>,
}

#[derive(Clone, Debug)]
struct PendingWait {
    io: usize,
    min_records: usize,
    capacity: usize,
}

#[derive(Clone, Debug, Default)]
struct Handle {
    timers: Vec<u64>,
    closed_ids: Vec<u64>,
    ring: VecDeque<ExpiryRecord>,
    overruns: u64,
    waits: Vec<PendingWait>,
}

/// What a wait completed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitOutcome {
    pub status: NtStatus,
    pub overruns: u64,
    pub records: Vec<ExpiryRecord>,
}

impl WaitOutcome {
    fn failed(status: NtStatus) -> Self {
        Self {
            status,
            overruns: 0,
            records: Vec::new(),
        }
    }
}

/// The service's limits the model needs.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub tick: i64,
    pub max_timers_per_handle: usize,
    pub max_pending_waits_per_handle: usize,
    pub ring_capacity: usize,
}

/// The model of one kernel with the driver loaded on it.
pub struct Model {
    limits: Limits,
    pub now: i64,
    pub last_tick: i64,
    pub offset: i64,
    next_set_seq: u64,
    timers: BTreeMap<u64, Timer>,
    dpc_queue: VecDeque<u64>,
    handles: Vec<Handle>,
    /// Every id ever issued (ids are never reused).
    issued: Vec<u64>,
    /// Completions of submitted waits, by io number (`None`: still pending).
    pub completions: Vec<Option<WaitOutcome>>,
    /// Records dated after their run (negative lateness) without a documented reason.
    pub sign_violations: Vec<ExpiryRecord>,
    /// Records or queries that counted more expirations than the kernel produced.
    pub invented: Vec<String>,
    /// The kernel's expiries since the last [`Model::take_expiries`]: (timer, tick, due).
    kernel_log: Vec<(u64, i64, i64)>,
}

/// 100 ns units per millisecond.
pub const MS: i64 = 10_000;

impl Model {
    pub fn new(limits: Limits, boot_system_time: i64, handles: usize) -> Self {
        Self {
            limits,
            now: 0,
            last_tick: 0,
            offset: boot_system_time,
            next_set_seq: 0,
            timers: BTreeMap::new(),
            dpc_queue: VecDeque::new(),
            handles: vec![Handle::default(); handles],
            issued: Vec::new(),
            completions: Vec::new(),
            sign_violations: Vec::new(),
            invented: Vec::new(),
            kernel_log: Vec::new(),
        }
    }

    pub fn system_now(&self) -> i64 {
        self.offset + self.now
    }

    /// Live timer ids of a handle, in creation order.
    pub fn live_ids(&self, handle: usize) -> &[u64] {
        &self.handles[handle].timers
    }

    /// Closed timer ids of a handle (stale).
    pub fn closed_ids(&self, handle: usize) -> &[u64] {
        &self.handles[handle].closed_ids
    }

    /// Io numbers of the waits pending on any handle.
    pub fn pending_ios(&self) -> Vec<usize> {
        self.handles
            .iter()
            .flat_map(|handle| handle.waits.iter().map(|wait| wait.io))
            .collect()
    }

    // ---- the kernel ------------------------------------------------------------------

    /// The kernel's expiries since the last call: (timer, tick, latest due covered).
    pub fn take_expiries(&mut self) -> Vec<(u64, i64, i64)> {
        std::mem::take(&mut self.kernel_log)
    }

    fn set_kernel_timer(&mut self, id: u64, schedule: &Schedule) {
        let base = if schedule.flags & SCHEDULE_ABSOLUTE == 0 {
            KernelDue::Interrupt(self.last_tick + schedule.due_time)
        } else {
            KernelDue::System(schedule.due_time)
        };
        let seq = self.next_set_seq;
        self.next_set_seq += 1;
        let timer = self.timers.get_mut(&id).expect("live timer");
        timer.set = Some(KernelSetting {
            base,
            period: i64::from(schedule.period_ms) * MS,
            seq,
        });
        timer.signaled = false;
    }

    fn next_event(&self) -> Option<i64> {
        let tick = self.limits.tick;
        self.timers
            .values()
            .filter_map(|timer| timer.set.map(|set| set.base.interrupt(self.offset)))
            .min()
            .map(|due| (due.div_euclid(tick) + i64::from(due.rem_euclid(tick) != 0)) * tick)
            .map(|due| due.max(self.last_tick + tick))
    }

    /// Moves time forward; `run_dpcs` false leaves every DPC queued
    /// (`Kernel::advance_without_running_dpcs`).
    pub fn advance(&mut self, duration: i64, run_dpcs: bool) {
        if run_dpcs {
            self.run_dpcs();
        }
        let target = self.now + duration;
        while let Some(event) = self.next_event().filter(|event| *event <= target) {
            self.now = self.now.max(event);
            self.last_tick = self.last_tick.max(event);
            self.expire_due();
            if run_dpcs {
                self.run_dpcs();
            }
        }
        self.now = self.now.max(target);
        let tick = self.limits.tick;
        self.last_tick = self.last_tick.max(target / tick * tick);
    }

    /// Sets the system clock; absolute timers follow.
    pub fn set_system_time(&mut self, system_time: i64) {
        self.offset = system_time - self.now;
        for timer in self.timers.values_mut() {
            timer.clock_changes += 1;
        }
    }

    fn expire_due(&mut self) {
        let mut due: Vec<(i64, u64, u64)> = self
            .timers
            .iter()
            .filter_map(|(id, timer)| {
                let set = timer.set?;
                let at = set.base.interrupt(self.offset);
                (at <= self.last_tick).then_some((at, set.seq, *id))
            })
            .collect();
        due.sort_unstable();
        for (_, _, id) in due {
            self.expire_timer(id);
        }
    }

    fn expire_timer(&mut self, id: u64) {
        let (offset, tick) = (self.offset, self.last_tick);
        if std::env::var_os("KTIMER_MODEL_TRACE").is_some() {
            eprintln!("expire {id:#x} at tick {tick} now {}", self.now);
        }
        let timer = self.timers.get_mut(&id).expect("due timer");
        let Some(set) = timer.set.as_mut() else {
            return;
        };
        timer.signaled = true;
        let current = set.base.interrupt(offset);
        let covered = if set.period > 0 {
            // Later periods are intervals: the next due time is interrupt time, the first
            // of the grid after this tick (due times within one tick are one expiry).
            let periods = if current > tick {
                1
            } else {
                (tick - current) / set.period + 1
            };
            set.base = KernelDue::Interrupt(current + periods * set.period);
            current + (periods - 1) * set.period
        } else {
            timer.set = None;
            current
        };
        timer.kernel_expiries.push((tick, covered));
        self.kernel_log.push((id, tick, covered));
        if !timer.dpc_queued {
            timer.dpc_queued = true;
            self.dpc_queue.push_back(id);
        }
    }

    /// Runs every queued DPC in queuing order (a dispatch, or `KeFlushQueuedDpcs`).
    fn run_dpcs(&mut self) {
        while let Some(id) = self.dpc_queue.pop_front() {
            if let Some(timer) = self.timers.get_mut(&id) {
                timer.dpc_queued = false;
                self.on_expiry(id);
            }
        }
    }

    /// `KeCancelTimer` + `KeRemoveQueueDpc` of a timer being destroyed.
    fn destroy_timer(&mut self, id: u64) {
        self.timers.remove(&id);
        self.dpc_queue.retain(|queued| *queued != id);
    }

    // ---- the service: the expiry path --------------------------------------------------

    fn on_expiry(&mut self, id: u64) {
        let fire = self.now;
        let (offset, last_tick, tick_length) = (self.offset, self.last_tick, self.limits.tick);
        let timer = self.timers.get_mut(&id).expect("running timer");
        if timer.state != STATE_ARMED {
            return;
        }
        // A relative arming's count is the kernel's; an absolute one follows PROTOCOL.md's
        // rule from its first run (the driver cannot know the kernel's grid exactly).
        let exact = timer.counted_from.is_none() && timer.absolute_due.is_none();
        if let Some(system_due) = timer.absolute_due.take() {
            // PROTOCOL.md "Expirations": the later of the datings with the clock's offset at
            // arming and now that is not after this tick (else this tick).
            let now_dating = system_due - offset;
            let armed_dating = system_due - timer.offset_at_arming;
            timer.first_due = [now_dating, armed_dating]
                .into_iter()
                .filter(|dating| *dating <= last_tick)
                .max()
                .unwrap_or(last_tick);
            timer.counted_from = Some(last_tick);
        }
        let kernel_count = u64::try_from(timer.kernel_expiries.len()).unwrap();
        let runs = timer.dpc_runs + 1;
        let (sequence, due) = if timer.period == 0 {
            if timer.expirations > 0 {
                return;
            }
            let due = if exact {
                timer
                    .kernel_expiries
                    .first()
                    .map_or(timer.first_due, |e| e.1)
            } else {
                timer.first_due
            };
            (1, due)
        } else if exact {
            // The kernel's own count; its latest expiry's due time.
            let sequence = kernel_count.max(runs).max(timer.expirations);
            if sequence <= timer.expirations {
                return;
            }
            let index = usize::try_from(sequence - 1).unwrap();
            (sequence, timer.kernel_expiries[index].1)
        } else {
            let sequence = documented_count(timer, last_tick, tick_length)
                .max(runs)
                .max(timer.expirations);
            if sequence <= timer.expirations {
                return;
            }
            (sequence, documented_due(timer, sequence, tick_length))
        };
        if sequence > kernel_count {
            self.invented.push(format!(
                "timer {id:#x} run at {fire}: sequence {sequence}, the kernel expired it {kernel_count} times"
            ));
        }
        let covered = sequence - timer.expirations;
        if std::env::var_os("KTIMER_MODEL_TRACE").is_some() {
            eprintln!(
                "run {id:#x} at {fire} first_due {} period {} seq {sequence} kernel {kernel_count}",
                timer.first_due, timer.period
            );
        }
        let lateness = fire - due;
        timer.expirations = sequence;
        if timer.dpc_runs == 0 {
            timer.lateness_min = lateness;
            timer.lateness_max = lateness;
        } else {
            timer.lateness_min = timer.lateness_min.min(lateness);
            timer.lateness_max = timer.lateness_max.max(lateness);
        }
        timer.dpc_runs += 1;
        timer.lateness_last = lateness;
        timer.lateness_sum += i128::from(lateness);
        if timer.period == 0 {
            timer.state = STATE_EXPIRED;
        }
        let record = ExpiryRecord {
            timer_id: id,
            sequence,
            due_time: due,
            fire_time: fire,
            lateness,
            expirations: u32::try_from(covered).unwrap_or(u32::MAX),
            reserved: 0,
        };
        // PROTOCOL.md: a record is never dated after its run, except an absolute arming's
        // (its grid is dated by the driver, not the kernel) while its clock has not moved.
        if lateness < 0 && (exact || timer.clock_changes == 0) {
            self.sign_violations.push(record);
        }
        let handle_index = timer.handle;
        let capacity = self.limits.ring_capacity;
        let handle = &mut self.handles[handle_index];
        if handle.ring.len() < capacity {
            handle.ring.push_back(record);
        } else {
            handle.overruns += 1;
        }
        self.complete_ready_waits(handle_index);
    }

    fn complete_ready_waits(&mut self, handle_index: usize) {
        loop {
            let handle = &mut self.handles[handle_index];
            let ready = handle.ring.len();
            if ready == 0 {
                return;
            }
            let Some(position) = handle
                .waits
                .iter()
                .position(|wait| wait.min_records <= ready)
            else {
                return;
            };
            let wait = handle.waits.remove(position);
            let outcome = Self::drain(handle, wait.capacity);
            self.completions[wait.io] = Some(outcome);
        }
    }

    fn drain(handle: &mut Handle, capacity: usize) -> WaitOutcome {
        let count = capacity.min(handle.ring.len());
        let records = handle.ring.drain(..count).collect();
        WaitOutcome {
            status: STATUS_SUCCESS,
            overruns: std::mem::take(&mut handle.overruns),
            records,
        }
    }

    // ---- the service: requests ---------------------------------------------------------

    /// The status of an id on a handle (step 7's id check).
    fn lookup(&self, handle: usize, id: u64) -> Result<(), NtStatus> {
        let own = &self.handles[handle];
        if own.timers.contains(&id) {
            Ok(())
        } else if own.closed_ids.contains(&id) {
            Err(STATUS_NOT_FOUND)
        } else {
            Err(STATUS_INVALID_HANDLE)
        }
    }

    /// CREATE with a valid schedule. `issued` is the id the driver returned on success.
    /// Returns the expected status, or a divergence in the id itself.
    pub fn create(
        &mut self,
        handle: usize,
        timer_type: u32,
        schedule: Schedule,
        issued: Option<u64>,
    ) -> Result<NtStatus, String> {
        if self.handles[handle].timers.len() >= self.limits.max_timers_per_handle {
            return Ok(STATUS_QUOTA_EXCEEDED);
        }
        let Some(id) = issued else {
            return Ok(STATUS_SUCCESS);
        };
        if id == 0 || self.issued.contains(&id) {
            return Err(format!("create returned id {id:#x}, zero or issued before"));
        }
        self.issued.push(id);
        self.handles[handle].timers.push(id);
        self.timers.insert(
            id,
            Timer {
                handle,
                timer_type,
                set: None,
                signaled: false,
                dpc_queued: false,
                kernel_expiries: Vec::new(),
                schedule,
                state: STATE_ARMED,
                first_due: 0,
                absolute_due: None,
                period: 0,
                expirations: 0,
                dpc_runs: 0,
                lateness_last: 0,
                lateness_min: 0,
                lateness_max: 0,
                lateness_sum: 0,
                armed_tick: 0,
                offset_at_arming: 0,
                clock_changes: 0,
                counted_from: None,
            },
        );
        self.arm(id, schedule);
        Ok(STATUS_SUCCESS)
    }

    /// The service's arming: the kernel timer set, the statistics reset.
    fn arm(&mut self, id: u64, schedule: Schedule) {
        self.set_kernel_timer(id, &schedule);
        let (last_tick, offset) = (self.last_tick, self.offset);
        let timer = self.timers.get_mut(&id).expect("live timer");
        timer.kernel_expiries.clear();
        timer.armed_tick = last_tick;
        timer.offset_at_arming = offset;
        timer.clock_changes = 0;
        timer.counted_from = None;
        timer.schedule = schedule;
        timer.state = STATE_ARMED;
        timer.period = if schedule.mode == MODE_PERIODIC {
            i64::from(schedule.period_ms) * MS
        } else {
            0
        };
        if schedule.flags & SCHEDULE_ABSOLUTE == 0 {
            timer.first_due = last_tick + schedule.due_time;
            timer.absolute_due = None;
        } else {
            timer.first_due = 0;
            timer.absolute_due = Some(schedule.due_time);
        }
        timer.expirations = 0;
        timer.dpc_runs = 0;
        timer.lateness_last = 0;
        timer.lateness_min = 0;
        timer.lateness_max = 0;
        timer.lateness_sum = 0;
    }

    /// SET: stop the timer, let a DPC its previous arming queued run (as that arming's),
    /// then arm anew. Returns the status and `was_armed`.
    pub fn set(&mut self, handle: usize, id: u64, schedule: Schedule) -> (NtStatus, bool) {
        if let Err(status) = self.lookup(handle, id) {
            return (status, false);
        }
        let was_armed = self
            .timers
            .get_mut(&id)
            .and_then(|timer| timer.set.take())
            .is_some();
        self.run_dpcs();
        self.arm(id, schedule);
        (STATUS_SUCCESS, was_armed)
    }

    /// CANCEL: returns the status and `was_armed`.
    pub fn cancel(&mut self, handle: usize, id: u64) -> (NtStatus, bool) {
        if let Err(status) = self.lookup(handle, id) {
            return (status, false);
        }
        let timer = self.timers.get_mut(&id).expect("live timer");
        let was_armed = timer.set.take().is_some();
        if timer.state == STATE_ARMED {
            timer.state = STATE_CANCELLED;
        }
        (STATUS_SUCCESS, was_armed)
    }

    /// QUERY.
    pub fn query(&self, handle: usize, id: u64) -> Result<QueryResponse, NtStatus> {
        self.lookup(handle, id)?;
        let timer = &self.timers[&id];
        debug_assert!(timer.expirations <= timer.kernel_expiries.len() as u64);
        let due_time = match timer.absolute_due {
            Some(system_due) => system_due - self.offset,
            None => timer.first_due,
        };
        let mean = if timer.dpc_runs == 0 {
            0
        } else {
            i64::try_from(timer.lateness_sum / i128::from(timer.dpc_runs)).unwrap()
        };
        Ok(QueryResponse {
            header: ktimer_abi::Header::of::<QueryResponse>(),
            timer_id: id,
            state: timer.state,
            signaled: u32::from(timer.signaled),
            timer_type: timer.timer_type,
            flags: 0,
            mode: timer.schedule.mode,
            period_ms: timer.schedule.period_ms,
            due_time,
            expirations: timer.expirations,
            dpc_runs: timer.dpc_runs,
            coalesced: timer.expirations - timer.dpc_runs,
            lateness_last: timer.lateness_last,
            lateness_min: timer.lateness_min,
            lateness_max: timer.lateness_max,
            lateness_mean: mean,
        })
    }

    /// CLOSE (a timer): destroyed, its id stale; the teardown flushes the DPCs.
    pub fn close_timer(&mut self, handle: usize, id: u64) -> NtStatus {
        if let Err(status) = self.lookup(handle, id) {
            return status;
        }
        let own = &mut self.handles[handle];
        own.timers.retain(|live| *live != id);
        own.closed_ids.push(id);
        self.destroy_timer(id);
        self.run_dpcs();
        STATUS_SUCCESS
    }

    /// WAIT submitted as io number `io` (the next one): completes at once or is pending.
    pub fn wait(&mut self, handle: usize, min_records: usize, capacity: usize) -> usize {
        let io = self.completions.len();
        self.completions.push(None);
        let outcome = if min_records > self.limits.ring_capacity || min_records > capacity {
            Some(WaitOutcome::failed(STATUS_INVALID_PARAMETER))
        } else if self.handles[handle].ring.len() >= min_records {
            Some(Self::drain(&mut self.handles[handle], capacity))
        } else if self.handles[handle].waits.len() >= self.limits.max_pending_waits_per_handle {
            Some(WaitOutcome::failed(STATUS_QUOTA_EXCEEDED))
        } else {
            self.handles[handle].waits.push(PendingWait {
                io,
                min_records,
                capacity,
            });
            None
        };
        self.completions[io] = outcome;
        io
    }

    /// `CancelIoEx` on io number `io`: a pending wait completes with `STATUS_CANCELLED`.
    pub fn cancel_io(&mut self, io: usize) {
        for handle in &mut self.handles {
            if let Some(position) = handle.waits.iter().position(|wait| wait.io == io) {
                handle.waits.remove(position);
                self.completions[io] = Some(WaitOutcome::failed(STATUS_CANCELLED));
            }
        }
    }

    /// `CloseHandle`, then a fresh handle in the same place: the waits complete with
    /// `STATUS_CANCELLED` (oldest first), the timers are destroyed, the ring dropped; if
    /// timers were destroyed, the teardown flushes the DPCs.
    pub fn reopen_handle(&mut self, handle: usize) {
        let old = std::mem::take(&mut self.handles[handle]);
        for id in &old.timers {
            self.destroy_timer(*id);
        }
        for wait in &old.waits {
            self.completions[wait.io] = Some(WaitOutcome::failed(STATUS_CANCELLED));
        }
        if !old.timers.is_empty() {
            self.run_dpcs();
        }
    }

    /// Removal of the device with the handles still open (how the test ends): the
    /// framework cancels every request the driver holds cancelable, so every pending wait
    /// completes with `STATUS_CANCELLED`, before any handle is torn down (so no teardown's
    /// DPC flush can deliver a record to a wait any more). The handles close afterwards;
    /// nothing after that is compared.
    pub fn remove_device(&mut self) {
        for handle in &mut self.handles {
            for wait in handle.waits.drain(..) {
                self.completions[wait.io] = Some(WaitOutcome::failed(STATUS_CANCELLED));
            }
        }
    }
}

/// PROTOCOL.md's count for an absolute periodic arming: one expiration at its first run's
/// tick, then one per `max(period, tick)`.
fn documented_count(timer: &Timer, last_tick: i64, tick: i64) -> u64 {
    let from = timer.counted_from.expect("dated by its first run");
    if last_tick < from {
        return 0;
    }
    u64::try_from(1 + (last_tick - from) / tick.max(timer.period)).unwrap()
}

/// The due time PROTOCOL.md gives expiration `sequence` there: the latest due time of the
/// grid from the dated first due time at or before the tick that expiration is counted at.
fn documented_due(timer: &Timer, sequence: u64, tick: i64) -> i64 {
    let from = timer.counted_from.expect("dated by its first run");
    let at = from + i64::try_from(sequence - 1).unwrap() * tick.max(timer.period);
    if at < timer.first_due {
        return timer.first_due;
    }
    timer.first_due + (at - timer.first_due) / timer.period * timer.period
}
