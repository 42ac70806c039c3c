//! The expiry path: what a timer's DPC runs (`DISPATCH_LEVEL`, no allocation): count the
//! run's expirations, push one record into the handle's ring, complete the waits it
//! satisfies.

use ktimer_abi::{ExpiryRecord, MODE_ONE_SHOT, STATE_ARMED, STATE_EXPIRED};

use crate::handle::wait_state;
use crate::ids;
use crate::state::{Expiry, HandleCore, HandleState};
use crate::waits;
use crate::waits::{PendingWait, WaitLock, WaitState};
use ktimer_kernel::clock;
use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::spin_lock::SpinLock;
use ktimer_kernel::timer::TimerCallback;

impl<R: PendingWait> TimerCallback for Expiry<R> {
    fn expired(&self, irql: &DispatchLevel) {
        self.handle.on_expiry(self.slot, self.generation, irql);
    }
}

impl<R: PendingWait> HandleCore<R> {
    /// The expiry path: a timer's DPC (`DISPATCH_LEVEL`). Counts the run, records it, and
    /// completes the waits it satisfies. No allocation.
    fn on_expiry(&self, slot: u16, generation: u32, irql: &DispatchLevel) {
        let waiters = {
            let mut guard = self.state.lock_at_dpc(irql);
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
            // The clocks are read under the lock, and only for a run that may count: two runs
            // of one timer overlapping on two processors are counted in the order they take
            // it, each with a later reading.
            let now =
                i64::try_from(clock::interrupt_time_precise().as_hundred_ns()).unwrap_or(i64::MAX);
            let tick_now =
                i64::try_from(clock::interrupt_time().as_hundred_ns()).unwrap_or(i64::MAX);
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
}

/// A handle's lock for the wait protocol, acquired at `DISPATCH_LEVEL` (the expiry path).
pub(crate) struct AtDpc<'a, R: PendingWait> {
    state: &'a SpinLock<HandleState<R>>,
    irql: &'a DispatchLevel,
}

impl<R: PendingWait> WaitLock<R> for AtDpc<'_, R> {
    fn with<T>(&self, f: impl FnOnce(WaitState<'_, R>) -> T) -> T {
        f(wait_state(&mut self.state.lock_at_dpc(self.irql)))
    }
}
