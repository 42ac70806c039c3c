//! `ExAllocateTimer` timers: allocation, setting, cancelling, deletion and release.

use std::ffi::c_void;
use std::sync::MutexGuard;
use std::time::Instant;

use crate::bugcheck::{codes, routine};
use crate::trace::Event;
use crate::types::EX_TIMER;

use super::{
    Due, Entry, ExCallback, ExSetting, ExTimerRec, ExTimerStorage, Inner, SendPtr, State,
    remove_limit,
};

impl Inner {
    /// `ExAllocateTimer` after IRQL and argument checks.
    pub(crate) fn allocate_ex_timer(
        &self,
        callback: Option<ExCallback>,
        context: *mut c_void,
        attributes: u32,
    ) -> *mut EX_TIMER {
        let storage = Box::into_raw(Box::new(ExTimerStorage::default()));
        let mut st = self.lock();
        let id = Self::allocate_id(&mut st);
        st.ex_timers.insert(
            storage.addr(),
            ExTimerRec {
                id,
                ptr: SendPtr(storage),
                callback,
                context: SendPtr(context),
                high_resolution: attributes & crate::types::EX_TIMER_HIGH_RESOLUTION != 0,
                set: None,
                queued: None,
                running: 0,
                deleted: false,
            },
        );
        self.trace(
            &mut st,
            Event::ExTimerAllocated {
                timer: id,
                attributes,
            },
        );
        storage.cast::<EX_TIMER>()
    }

    pub(super) fn ex_timer_checked<'a>(
        &self,
        st: MutexGuard<'a, State>,
        addr: usize,
        routine: u64,
    ) -> MutexGuard<'a, State> {
        let valid = st.ex_timers.get(&addr).is_some_and(|t| !t.deleted);
        if !valid {
            self.security_failure(st, codes::FAST_FAIL_CORRUPT_LIST_ENTRY, addr, 0, routine);
        }
        st
    }

    /// `ExSetTimer` after pointer and IRQL checks.
    pub(crate) fn set_ex_timer(&self, addr: usize, due_time: i64, period: i64) -> bool {
        let st = self.lock();
        let mut st = self.ex_timer_checked(st, addr, routine::EX_SET_TIMER);
        let Ok(period) = u64::try_from(period) else {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                period.cast_unsigned(),
                routine::EX_SET_TIMER,
            );
        };
        let high_resolution = st.ex_timers.get(&addr).is_some_and(|t| t.high_resolution);
        if high_resolution && due_time > 0 {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                due_time.cast_unsigned(),
                routine::EX_SET_TIMER,
            );
        }
        let now = self.precise_now(&st);
        let due = match due_time {
            d if d <= 0 => Due::Interrupt(now.saturating_add(d.unsigned_abs())),
            d => Due::System(d),
        };
        let seq = st.next_set_seq;
        st.next_set_seq += 1;
        let interrupt_due = due.interrupt(st.system_offset);
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.replace(ExSetting { due, period, seq }).is_some();
        let id = timer.id;
        self.trace(
            &mut st,
            Event::ExTimerSet {
                timer: id,
                due: interrupt_due,
                period,
                was_set,
            },
        );
        drop(st);
        self.changed.notify_all();
        was_set
    }

    /// `ExCancelTimer` after pointer and IRQL checks.
    pub(crate) fn cancel_ex_timer(&self, addr: usize) -> bool {
        let st = self.lock();
        let mut st = self.ex_timer_checked(st, addr, routine::EX_CANCEL_TIMER);
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.take().is_some();
        let id = timer.id;
        self.trace(&mut st, Event::ExTimerCancelled { timer: id, was_set });
        was_set
    }

    /// `ExDeleteTimer` after pointer and IRQL checks.
    pub(crate) fn delete_ex_timer(&self, addr: usize, cancel: bool, wait: bool) -> bool {
        let st = self.lock();
        let mut st = self.ex_timer_checked(st, addr, routine::EX_DELETE_TIMER);
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let id = timer.id;
        let mut cancelled = false;
        if cancel {
            cancelled = timer.set.take().is_some();
            self.trace(
                &mut st,
                Event::ExTimerCancelled {
                    timer: id,
                    was_set: cancelled,
                },
            );
        } else if timer.set.as_ref().is_some_and(|s| s.period > 0) {
            // A periodic timer that is not cancelled would never finish expiring.
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                0,
                routine::EX_DELETE_TIMER,
            );
        }
        if let Some(timer) = st.ex_timers.get_mut(&addr) {
            timer.deleted = true;
        }
        if wait {
            loop {
                let busy = st
                    .ex_timers
                    .get(&addr)
                    .is_some_and(|t| t.queued.is_some() || t.running > 0);
                if !busy || st.shutdown || st.bug_check.is_some() {
                    break;
                }
                if let Some(bug_check) = self.watchdog(&st, Instant::now()) {
                    self.fail(st, bug_check);
                }
                st = self.wait_dispatching(st);
            }
        }
        self.release_ex_timer_if_done(&mut st, addr);
        cancelled
    }

    /// Waits for a change while letting processors run everything queued (virtual clock);
    /// inline execution runs the next queued DPC on this thread instead of waiting.
    pub(super) fn wait_dispatching<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        st.dispatch_limits.push(u64::MAX);
        self.changed.notify_all();
        let mut st = if self.inline
            && let Some((cpu, entry)) = self.pick_inline(&mut st, u64::MAX)
        {
            self.run_inline(st, cpu, entry, &mut None)
        } else {
            self.wait(st)
        };
        remove_limit(&mut st, u64::MAX);
        st
    }

    pub(super) fn finish_ex_callback(&self, st: &mut State, entry: Entry) {
        if let Some(timer) = st
            .ex_timers
            .get_mut(&entry.addr)
            .filter(|t| t.id == entry.id)
        {
            timer.running = timer.running.saturating_sub(1);
        }
        self.release_ex_timer_if_done(st, entry.addr);
    }

    pub(super) fn release_ex_timer_if_done(&self, st: &mut State, addr: usize) {
        let done = st
            .ex_timers
            .get(&addr)
            .is_some_and(|t| t.deleted && t.queued.is_none() && t.running == 0 && t.set.is_none());
        if done && let Some(timer) = st.ex_timers.remove(&addr) {
            self.trace(st, Event::ExTimerDeleted { timer: timer.id });
            // SAFETY: the storage came from `Box::into_raw` in `allocate_ex_timer` and its
            // record, now removed, was the only owner; no callback is queued or running.
            drop(unsafe { Box::from_raw(timer.ptr.0) });
        }
    }
}
