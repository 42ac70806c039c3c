//! `KTIMER` objects and `KeWaitForSingleObject` on them: initialisation, setting,
//! cancelling, reading and waiting, and the release of waiters on expiry.

use std::sync::MutexGuard;

use crate::bugcheck::{codes, routine};
use crate::trace::Event;
use crate::types::{NTSTATUS, STATUS_SUCCESS, STATUS_TIMEOUT};

use super::{Due, Inner, ObjectKind, State, TimerRec, TimerSetting, UNITS_PER_MS, Waiter};

impl Inner {
    /// `KeInitializeTimerEx` after pointer, IRQL and type checks. Returns the signature to
    /// write into the object.
    pub(crate) fn initialize_timer(&self, addr: usize, synchronization: bool) -> u64 {
        let signature = self.signature(ObjectKind::Timer, addr);
        let mut st = self.lock();
        if let Some(existing) = st.timers.get(&addr)
            && existing.set.is_some()
        {
            self.security_failure(
                st,
                codes::FAST_FAIL_CORRUPT_LIST_ENTRY,
                addr,
                0,
                routine::KE_INITIALIZE_TIMER,
            );
        }
        let id = Self::allocate_id(&mut st);
        st.last_timer_initialized = Some(id);
        st.timers.insert(
            addr,
            TimerRec {
                id,
                signature,
                synchronization,
                signaled: false,
                set: None,
            },
        );
        self.trace(
            &mut st,
            Event::TimerInitialized {
                timer: id,
                synchronization,
            },
        );
        signature
    }

    /// Looks up an initialised timer; bug-checks on an uninitialised one.
    pub(super) fn timer_checked<'a>(
        &self,
        st: MutexGuard<'a, State>,
        addr: usize,
        signature: u64,
        routine: u64,
    ) -> MutexGuard<'a, State> {
        let valid = st
            .timers
            .get(&addr)
            .is_some_and(|t| t.signature == signature);
        if !valid {
            self.security_failure(st, codes::FAST_FAIL_CORRUPT_LIST_ENTRY, addr, 0, routine);
        }
        st
    }

    pub(super) fn dpc_checked<'a>(
        &self,
        st: MutexGuard<'a, State>,
        addr: usize,
        signature: u64,
        routine: u64,
    ) -> MutexGuard<'a, State> {
        let valid = st.dpcs.get(&addr).is_some_and(|d| d.signature == signature);
        if !valid {
            self.security_failure(st, codes::FAST_FAIL_CORRUPT_LIST_ENTRY, addr, 0, routine);
        }
        st
    }

    /// `KeSetTimerEx` / `KeSetCoalescableTimer` after pointer and IRQL checks.
    pub(crate) fn set_timer(
        &self,
        addr: usize,
        signature: u64,
        due_time: i64,
        period_ms: i64,
        tolerable_delay_ms: u32,
        dpc: Option<(usize, u64)>,
    ) -> bool {
        let st = self.lock();
        let mut st = self.timer_checked(st, addr, signature, routine::KE_SET_TIMER);
        let Ok(period_ms) = u32::try_from(period_ms) else {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                period_ms.cast_unsigned(),
                routine::KE_SET_TIMER,
            );
        };
        if period_ms > crate::types::MAXLONG {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                u64::from(period_ms),
                routine::KE_SET_TIMER,
            );
        }
        let dpc_addr = match dpc {
            Some((dpc_addr, dpc_signature)) => {
                st = self.dpc_checked(st, dpc_addr, dpc_signature, routine::KE_SET_TIMER);
                Some(dpc_addr)
            }
            None => None,
        };
        // A relative due time counts from the interrupt time of the last clock tick (the
        // clock the timer queue works on), so a timer set between ticks may expire up to a
        // tick before "now + delay" (../shared/kernel-timer-semantics.md, timer accuracy).
        let tick = st.last_tick;
        let base = match due_time {
            d if d < 0 => Due::Interrupt(tick.saturating_add(d.unsigned_abs())),
            0 => Due::Interrupt(tick),
            d => Due::System(d),
        };
        let seq = st.next_set_seq;
        st.next_set_seq += 1;
        let setting = TimerSetting {
            base,
            period: u64::from(period_ms) * UNITS_PER_MS,
            tolerance: u64::from(tolerable_delay_ms) * UNITS_PER_MS,
            dpc: dpc_addr,
            seq,
        };
        let due = setting.due(st.system_offset);
        let dpc_id = dpc_addr.and_then(|a| st.dpcs.get(&a)).map(|d| d.id);
        let Some(timer) = st.timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.replace(setting).is_some();
        timer.signaled = false;
        let id = timer.id;
        self.trace(
            &mut st,
            Event::TimerSet {
                timer: id,
                due,
                period_ms,
                dpc: dpc_id,
                was_set,
            },
        );
        drop(st);
        self.changed.notify_all();
        was_set
    }

    /// `KeCancelTimer` after pointer and IRQL checks.
    pub(crate) fn cancel_timer(&self, addr: usize, signature: u64) -> bool {
        let st = self.lock();
        let mut st = self.timer_checked(st, addr, signature, routine::KE_CANCEL_TIMER);
        let Some(timer) = st.timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.take().is_some();
        let id = timer.id;
        self.trace(&mut st, Event::TimerCancelled { timer: id, was_set });
        was_set
    }

    /// `KeReadStateTimer` after pointer and IRQL checks.
    pub(crate) fn read_state_timer(&self, addr: usize, signature: u64) -> bool {
        let st = self.lock();
        let st = self.timer_checked(st, addr, signature, routine::KE_READ_STATE_TIMER);
        st.timers.get(&addr).is_some_and(|t| t.signaled)
    }

    /// `KeWaitForSingleObject` on a timer, after pointer and IRQL checks.
    /// `timeout`: `None` = forever; `Some(t)` as the DDI's `*Timeout`.
    pub(crate) fn wait_for_timer(
        &self,
        addr: usize,
        signature: u64,
        timeout: Option<i64>,
    ) -> NTSTATUS {
        let st = self.lock();
        let mut st = self.timer_checked(st, addr, signature, routine::KE_WAIT_FOR_SINGLE_OBJECT);
        let Some(timer) = st.timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let id = timer.id;
        if timer.signaled {
            if timer.synchronization {
                timer.signaled = false;
            }
            self.trace(&mut st, Event::WaitSatisfied { timer: id });
            return STATUS_SUCCESS;
        }
        if timeout == Some(0) {
            self.trace(&mut st, Event::WaitTimedOut { timer: id });
            return STATUS_TIMEOUT;
        }
        let now = self.precise_now(&st);
        let deadline = timeout.map(|t| {
            if t < 0 {
                Due::Interrupt(now.saturating_add(t.unsigned_abs()))
            } else {
                Due::System(t)
            }
        });
        let waiter = st.next_waiter;
        st.next_waiter += 1;
        st.waiters.push(Waiter {
            id: waiter,
            timer: addr,
            deadline,
            outcome: None,
        });
        self.changed.notify_all();
        loop {
            let position = st.waiters.iter().position(|w| w.id == waiter);
            let outcome = position.and_then(|p| st.waiters[p].outcome);
            if let (Some(position), Some(status)) = (position, outcome) {
                st.waiters.swap_remove(position);
                drop(st);
                // `advance` waits for released waiters to leave.
                self.changed.notify_all();
                return status;
            }
            if position.is_none() || st.shutdown || st.bug_check.is_some() {
                if let Some(position) = position {
                    st.waiters.swap_remove(position);
                }
                return STATUS_TIMEOUT;
            }
            st = self.wait(st);
        }
    }

    pub(super) fn release_waiters(&self, st: &mut State, addr: usize) {
        let Some(timer) = st.timers.get(&addr) else {
            return;
        };
        let synchronization = timer.synchronization;
        let id = timer.id;
        let mut released = 0_u32;
        // Oldest waiter first (ids grow), so a synchronization timer releases in FIFO order.
        while let Some(waiter) = st
            .waiters
            .iter_mut()
            .filter(|w| w.timer == addr && w.outcome.is_none())
            .min_by_key(|w| w.id)
        {
            waiter.outcome = Some(STATUS_SUCCESS);
            released += 1;
            if synchronization {
                break;
            }
        }
        for _ in 0..released {
            self.trace(st, Event::WaitSatisfied { timer: id });
        }
        if synchronization
            && released > 0
            && let Some(timer) = st.timers.get_mut(&addr)
        {
            timer.signaled = false;
        }
    }
}
