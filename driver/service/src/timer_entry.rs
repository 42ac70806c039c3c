//! One timer of a handle as the service holds it: the kernel timer (a Ke timer or a
//! high-resolution timer), its schedule turned into kernel arguments, and its statistics.

use ktimer_abi::status::{NtStatus, STATUS_INVALID_PARAMETER};
use ktimer_abi::{
    MAX_RELATIVE_DUE_100NS, MODE_PERIODIC, QueryResponse, SCHEDULE_ABSOLUTE, STATE_ARMED,
    STATE_CANCELLED, Schedule,
};

use super::stats::{Arming, Stats};
use ktimer_kernel::clock;
use ktimer_kernel::hr_timer::HighResolutionTimer;
use ktimer_kernel::time::{DueTime, Interval, Period, SystemTime, TolerableDelay};
use ktimer_kernel::timer::{Timer, TimerCallback};

/// A schedule validated against the driver's limits and converted to the kernel's argument
/// types, ready to arm without any further failure. Made before any state changes, so a
/// rejected request changes nothing.
#[derive(Clone, Copy, Debug)]
pub struct Prepared {
    /// The request's schedule, as given.
    pub schedule: Schedule,
    due: Due,
    period: Option<Period>,
    period_hundred_ns: i64,
    tolerable_delay: TolerableDelay,
}

/// Any conversion failure of a request's value is an invalid parameter.
fn invalid<E>(_: E) -> NtStatus {
    STATUS_INVALID_PARAMETER
}

#[derive(Clone, Copy, Debug)]
enum Due {
    Relative(Interval),
    Absolute(SystemTime),
}

impl Prepared {
    /// Checks what the codec could not (the driver's minimum period; an absolute due time
    /// at most [`MAX_RELATIVE_DUE_100NS`] ahead of now) and converts. Any IRQL.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER`.
    pub fn new(schedule: Schedule, min_period_ms: u32) -> Result<Self, NtStatus> {
        let period = if schedule.mode == MODE_PERIODIC {
            let millis = u32::try_from(schedule.period_ms).map_err(invalid)?;
            if millis < min_period_ms {
                return Err(STATUS_INVALID_PARAMETER);
            }
            Some(Period::from_millis(millis).map_err(invalid)?)
        } else {
            None
        };
        let period_hundred_ns = i64::from(schedule.period_ms).saturating_mul(10_000);
        let due_value = u64::try_from(schedule.due_time).map_err(invalid)?;
        let due = if schedule.flags & SCHEDULE_ABSOLUTE == 0 {
            Due::Relative(Interval::from_hundred_ns(due_value).map_err(invalid)?)
        } else {
            let now = clock::system_time().as_hundred_ns_since_1601();
            let latest = now.saturating_add(MAX_RELATIVE_DUE_100NS.unsigned_abs());
            if due_value > latest {
                return Err(STATUS_INVALID_PARAMETER);
            }
            Due::Absolute(SystemTime::from_hundred_ns_since_1601(due_value).map_err(invalid)?)
        };
        Ok(Self {
            schedule,
            due,
            period,
            period_hundred_ns,
            tolerable_delay: TolerableDelay::from_millis(schedule.tolerable_delay_ms),
        })
    }

    /// Whether a high-resolution timer can take this schedule (relative, no tolerance).
    #[must_use]
    pub fn fits_high_resolution(&self) -> bool {
        matches!(self.due, Due::Relative(_)) && self.schedule.tolerable_delay_ms == 0
    }

    /// The arming this schedule made, in interrupt time (for an absolute due time, an
    /// estimate until the first run dates it: [`Arming::date_first_run`]). Called right
    /// after the kernel set the timer. Any IRQL.
    ///
    /// A standard timer's relative due time counts from the tick-granular interrupt time
    /// (`KeQueryInterruptTime`, what the kernel's timer queue uses), so that clock is read
    /// here too, after the kernel read it: the kernel's due time is never later than the one
    /// the statistics count from, so they never count an expiration it has not produced. A
    /// high-resolution timer expires at its exact due time, so its arming counts from the
    /// precise clock.
    fn arming_now(&self, high_resolution: bool) -> Arming {
        let tick_now = clock::interrupt_time().as_hundred_ns();
        let now = if high_resolution {
            clock::interrupt_time_precise().as_hundred_ns()
        } else {
            tick_now
        };
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let tick_now = i64::try_from(tick_now).unwrap_or(i64::MAX);
        let tick = if high_resolution {
            0
        } else {
            i64::try_from(clock::time_increment().as_hundred_ns()).unwrap_or(i64::MAX)
        };
        match self.due {
            Due::Relative(interval) => Arming::relative(
                now.saturating_add(i64::try_from(interval.as_hundred_ns()).unwrap_or(i64::MAX)),
                self.period_hundred_ns,
                tick_now,
                tick,
            ),
            Due::Absolute(at) => {
                let interrupt = i64::try_from(clock::interrupt_time_precise().as_hundred_ns())
                    .unwrap_or(i64::MAX);
                let system = i64::try_from(clock::system_time().as_hundred_ns_since_1601())
                    .unwrap_or(i64::MAX);
                Arming::absolute(
                    i64::try_from(at.as_hundred_ns_since_1601()).unwrap_or(i64::MAX),
                    self.period_hundred_ns,
                    tick_now,
                    tick,
                    system.saturating_sub(interrupt),
                )
            }
        }
    }
}

/// The kernel timer behind one id.
pub enum KernelTimer<C: TimerCallback> {
    /// `KeInitializeTimerEx` + `KeSetTimerEx`/`KeSetCoalescableTimer`.
    Standard(Timer<C>),
    /// `ExAllocateTimer(EX_TIMER_HIGH_RESOLUTION)` + `ExSetTimer`.
    HighResolution(HighResolutionTimer<C>),
}

/// One live timer: the kernel timer, what it was created as, its current arming and its
/// statistics. Lives in the handle's spin-locked state; the expiry path updates it there.
pub struct TimerEntry<C: TimerCallback> {
    /// The kernel timer (dropping the entry stops and frees it).
    pub timer: KernelTimer<C>,
    /// The slot generation of the id it was created under.
    pub generation: u32,
    /// `TIMER_TYPE_*` as created.
    pub timer_type: u32,
    /// `CREATE_*` flags as created.
    pub flags: u32,
    /// The current schedule, as requested.
    pub schedule: Schedule,
    /// The current arming, in interrupt time.
    pub arming: Arming,
    /// Statistics since the current arming.
    pub stats: Stats,
    /// `STATE_*`.
    pub state: u32,
    /// Advanced by every arm and cancel: a re-arm that finds it changed after waiting for
    /// the DPCs knows another request armed or cancelled the timer meanwhile (see
    /// `Service::set`).
    pub arming_generation: u32,
}

impl<C: TimerCallback> TimerEntry<C> {
    /// Arms (or re-arms) with `prepared`, resetting the statistics. Returns whether the timer
    /// was in the kernel's timer queue. IRQL `<= DISPATCH_LEVEL`; no allocation.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER` if a high-resolution timer gets a schedule it cannot take
    /// (nothing changes then).
    pub fn arm(&mut self, prepared: &Prepared) -> Result<bool, NtStatus> {
        if self.refuses(prepared) {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let high_resolution = matches!(self.timer, KernelTimer::HighResolution(_));
        let was_armed = match &self.timer {
            KernelTimer::Standard(timer) => {
                let due = match prepared.due {
                    Due::Relative(interval) => DueTime::After(interval),
                    Due::Absolute(at) => DueTime::At(at),
                };
                if prepared.schedule.tolerable_delay_ms > 0 {
                    timer.set_coalescable(due, prepared.period, prepared.tolerable_delay)
                } else if let Some(period) = prepared.period {
                    timer.set_periodic(due, period)
                } else {
                    timer.set_once(due)
                }
            }
            KernelTimer::HighResolution(timer) => {
                let due = match prepared.due {
                    Due::Relative(interval) => interval,
                    // Excluded by `fits_high_resolution` above.
                    Due::Absolute(_) => return Err(STATUS_INVALID_PARAMETER),
                };
                let period = u64::try_from(prepared.period_hundred_ns).unwrap_or(0);
                match Interval::from_hundred_ns(period) {
                    Ok(period) if prepared.period.is_some() => timer.set_periodic(due, period),
                    _ => timer.set_once(due),
                }
            }
        };
        // Read the clocks after the kernel did (see `Prepared::arming_now`).
        let arming = prepared.arming_now(high_resolution);
        self.schedule = prepared.schedule;
        self.arming = arming;
        self.stats = Stats::default();
        self.state = STATE_ARMED;
        self.arming_generation = self.arming_generation.wrapping_add(1);
        Ok(was_armed)
    }

    /// Whether this timer cannot take `prepared` (a high-resolution timer needs a relative
    /// due time and no tolerable delay). Any IRQL.
    #[must_use]
    pub fn refuses(&self, prepared: &Prepared) -> bool {
        matches!(self.timer, KernelTimer::HighResolution(_)) && !prepared.fits_high_resolution()
    }

    /// Takes the kernel timer out of the timer queue without changing the service's state
    /// (the first step of a re-arm); returns whether it was there. A DPC already queued
    /// still runs, for the current arming. IRQL `<= DISPATCH_LEVEL`.
    #[must_use = "whether the timer was set"]
    pub fn stop(&self) -> bool {
        match &self.timer {
            KernelTimer::Standard(timer) => timer.cancel(),
            KernelTimer::HighResolution(timer) => timer.cancel(),
        }
    }

    /// Cancels; returns whether the timer was in the kernel's timer queue. A run the kernel
    /// already queued is ignored when it comes (the state says cancelled). IRQL `<=
    /// DISPATCH_LEVEL`.
    pub fn cancel(&mut self) -> bool {
        let was_armed = self.stop();
        if self.state == STATE_ARMED {
            self.state = STATE_CANCELLED;
        }
        self.arming_generation = self.arming_generation.wrapping_add(1);
        was_armed
    }

    /// The query response for this timer. IRQL `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn query(&self, timer_id: u64) -> QueryResponse {
        let interrupt_now =
            i64::try_from(clock::interrupt_time_precise().as_hundred_ns()).unwrap_or(i64::MAX);
        let system_now =
            i64::try_from(clock::system_time().as_hundred_ns_since_1601()).unwrap_or(i64::MAX);
        let signaled = match &self.timer {
            KernelTimer::Standard(timer) => timer.is_signaled(),
            KernelTimer::HighResolution(_) => false,
        };
        QueryResponse {
            header: ktimer_abi::Header::of::<QueryResponse>(),
            timer_id,
            state: self.state,
            signaled: u32::from(signaled),
            timer_type: self.timer_type,
            flags: self.flags,
            mode: self.schedule.mode,
            period_ms: self.schedule.period_ms,
            due_time: self.arming.first_due_at(interrupt_now, system_now),
            expirations: self.stats.expirations,
            dpc_runs: self.stats.dpc_runs,
            coalesced: self.stats.coalesced(),
            lateness_last: self.stats.lateness_last,
            lateness_min: self.stats.lateness_min,
            lateness_max: self.stats.lateness_max,
            lateness_mean: self.stats.lateness_mean(),
        }
    }
}
