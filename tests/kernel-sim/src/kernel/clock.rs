//! The clocks: `advance` (virtual), the real-time clock-interrupt thread, choosing the next
//! event, and expiring `KTIMER`s and `EX_TIMER`s in due order.

use std::ffi::c_void;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::trace::Event;
use crate::types::STATUS_TIMEOUT;

use super::{
    Clock, Entry, EntryKind, Inner, State, current_processor, next_period, to_units,
    units_to_duration,
};

impl Inner {
    pub(super) fn advance(&self, duration: Duration, run_dpcs: bool) {
        assert!(
            self.config.clock == Clock::Virtual,
            "kernel-sim: advance needs the virtual clock"
        );
        assert!(
            current_processor().is_none(),
            "kernel-sim: advance from a simulated processor would wait for itself"
        );
        let mut st = self.lock();
        if let Some(bug_check) = st.bug_check {
            drop(st);
            std::panic::panic_any(bug_check);
        }
        if run_dpcs {
            // DPCs queued since the last dispatch (e.g. by KeInsertQueueDpc) run first.
            st = self.wait_idle(st, u64::MAX, true);
        }
        let increment = self.increment();
        let target = st.now.saturating_add(to_units(duration));
        loop {
            match self.next_event(&st) {
                Some(event) if event <= target => {
                    st.now = st.now.max(event);
                    let tick = event / increment * increment;
                    let new_tick = tick > st.last_tick;
                    if new_tick {
                        st.stats.ticks += (tick - st.last_tick) / increment;
                        self.set_last_tick(&mut st, tick);
                    }
                    self.expire_due(&mut st, new_tick);
                    self.changed.notify_all();
                    if run_dpcs {
                        st = self.wait_idle(st, u64::MAX, true);
                    }
                }
                _ => break,
            }
        }
        st.now = st.now.max(target);
        let tick = target / increment * increment;
        if tick > st.last_tick {
            st.stats.ticks += (tick - st.last_tick) / increment;
            self.set_last_tick(&mut st, tick);
        }
        drop(st);
        self.changed.notify_all();
    }

    /// The next interrupt time at which something is due: the first tick at or after the
    /// earliest tick-granular due time (KTIMERs, normal `EX_TIMERs`, wait deadlines), or the
    /// exact due time of a high-resolution `EX_TIMER`.
    pub(super) fn next_event(&self, st: &State) -> Option<u64> {
        let increment = self.increment();
        let offset = st.system_offset;
        let tick_due = st
            .timers
            .values()
            .filter_map(|t| t.set.as_ref().map(|s| s.due(offset)))
            .chain(
                st.ex_timers
                    .values()
                    .filter(|t| !t.high_resolution)
                    .filter_map(|t| t.set.as_ref().map(|s| s.due.interrupt(offset))),
            )
            .chain(
                st.waiters
                    .iter()
                    .filter(|w| w.outcome.is_none())
                    .filter_map(|w| w.deadline.map(|d| d.interrupt(offset))),
            )
            .min()
            .map(|due| {
                due.div_ceil(increment)
                    .saturating_mul(increment)
                    .max(st.last_tick + increment)
            });
        let exact_due = st
            .ex_timers
            .values()
            .filter(|t| t.high_resolution)
            .filter_map(|t| t.set.as_ref().map(|s| s.due.interrupt(offset).max(st.now)))
            .min();
        match (tick_due, exact_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires everything due at the current time, in due order (ties: setting order).
    /// Tick-granular objects (`KTIMER`s, normal `EX_TIMER`s, wait deadlines) are processed
    /// only when a clock tick was reached (`new_tick`): a stop between ticks (a
    /// high-resolution timer's due time) expires only high-resolution timers, even for a
    /// `KTIMER` due at or before the last tick (it expires at the next tick).
    pub(super) fn expire_due(&self, st: &mut State, new_tick: bool) {
        let offset = st.system_offset;
        let tick = st.last_tick;
        let now = st.now;
        let mut due = std::mem::take(&mut st.scratch);
        due.clear();
        if new_tick {
            for (addr, timer) in &st.timers {
                if let Some(setting) = &timer.set
                    && setting.due(offset) <= tick
                {
                    let order = setting.order(offset);
                    due.push((order, setting.seq, *addr, EntryKind::Dpc));
                }
            }
        }
        for (addr, timer) in &st.ex_timers {
            if let Some(setting) = &timer.set {
                let at = setting.due.interrupt(offset);
                let limit = if timer.high_resolution { now } else { tick };
                if at <= limit && (new_tick || timer.high_resolution) {
                    due.push((i128::from(at), setting.seq, *addr, EntryKind::ExTimer));
                }
            }
        }
        due.sort_unstable();
        for &(_, _, addr, kind) in &due {
            match kind {
                EntryKind::Dpc => self.expire_timer(st, addr),
                EntryKind::ExTimer => self.expire_ex_timer(st, addr),
            }
        }
        st.scratch = due;
        // Waits time out on clock ticks.
        let mut index = 0;
        while index < st.waiters.len() {
            let waiter = &mut st.waiters[index];
            index += 1;
            if new_tick
                && waiter.outcome.is_none()
                && waiter.deadline.is_some_and(|d| d.interrupt(offset) <= tick)
            {
                waiter.outcome = Some(STATUS_TIMEOUT);
                let timer = waiter.timer;
                if let Some(id) = st.timers.get(&timer).map(|t| t.id) {
                    self.trace(st, Event::WaitTimedOut { timer: id });
                }
            }
        }
    }

    pub(super) fn expire_timer(&self, st: &mut State, addr: usize) {
        let offset = st.system_offset;
        let tick = st.last_tick;
        let system_now = self.system_now(st);
        let Some(timer) = st.timers.get_mut(&addr) else {
            return;
        };
        let Some(setting) = timer.set.as_mut() else {
            return;
        };
        timer.signaled = true;
        let id = timer.id;
        let dpc = setting.dpc;
        let current = setting.base.interrupt_signed(offset);
        let covered = if setting.period > 0 {
            // Re-arm from the previous due time (no drift); expirations that fell entirely
            // within one tick are coalesced into this one.
            setting.base = next_period(setting.base, setting.period, offset, tick);
            // The latest due time on the grid at or before this tick.
            (i128::from(setting.base.interrupt(offset)) - i128::from(setting.period)).max(current)
        } else {
            timer.set = None;
            current
        };
        let covered = i64::try_from(covered).unwrap_or(i64::MIN);
        if let Some(log) = st.expiry_log.as_mut() {
            log.push(crate::kernel::TimerExpiry {
                timer: id,
                at: tick,
                due: covered,
            });
        }
        st.stats.timer_expirations += 1;
        self.trace(st, Event::TimerExpired { timer: id });
        self.release_waiters(st, addr);
        if let Some(dpc) = dpc {
            // The system arguments carry the expiry time's low and high halves.
            let bits = system_now.cast_unsigned();
            let low = std::ptr::without_provenance_mut::<c_void>((bits & 0xFFFF_FFFF) as usize);
            let high = std::ptr::without_provenance_mut::<c_void>((bits >> 32) as usize);
            let cpu = self.round_robin_cpu(st);
            let already = st.dpcs.get(&dpc).is_some_and(|d| d.queued.is_some());
            if already {
                // Give the processor back: nothing was queued on it.
                st.next_cpu = cpu;
            }
            self.queue_dpc(st, dpc, (low, high), cpu);
        }
    }

    pub(super) fn expire_ex_timer(&self, st: &mut State, addr: usize) {
        let now = st.now;
        let offset = st.system_offset;
        let seq = st.next_queue_seq;
        let cpu = st.next_cpu;
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            return;
        };
        let Some(setting) = timer.set.as_mut() else {
            return;
        };
        let id = timer.id;
        if setting.period > 0 {
            let limit = if timer.high_resolution {
                now
            } else {
                st.last_tick
            };
            setting.due = next_period(setting.due, setting.period, offset, limit);
        } else {
            timer.set = None;
        }
        st.stats.ex_timer_expirations += 1;
        let has_callback = timer.callback.is_some();
        let queued = if timer.queued.is_some() || !has_callback {
            false
        } else {
            timer.queued = Some((cpu, seq));
            true
        };
        self.trace(st, Event::ExTimerExpired { timer: id });
        if queued {
            st.next_cpu = (cpu + 1) % self.config.processors;
            st.next_queue_seq += 1;
            st.queues[cpu].push_back(Entry {
                kind: EntryKind::ExTimer,
                addr,
                id,
                seq,
            });
            st.stats.dpcs_queued += 1;
            self.trace(st, Event::DpcQueued { dpc: id, cpu });
        } else if has_callback {
            st.stats.dpcs_already_queued += 1;
            self.trace(st, Event::DpcAlreadyQueued { dpc: id });
        }
    }

    pub(super) fn clock_main(self: Arc<Self>) {
        let increment = self.increment();
        let mut st = self.lock();
        loop {
            if st.shutdown || st.bug_check.is_some() {
                break;
            }
            let now = to_units(self.started.elapsed());
            st.now = st.now.max(now);
            let tick = now / increment * increment;
            let new_tick = tick > st.last_tick;
            if new_tick {
                st.stats.ticks += (tick - st.last_tick) / increment;
                self.set_last_tick(&mut st, tick);
            }
            self.expire_due(&mut st, new_tick);
            if let Some(bug_check) = self.watchdog(&st, Instant::now()) {
                self.record(&mut st, bug_check);
            }
            self.changed.notify_all();
            let next_tick = st.last_tick + increment;
            let next = self.next_event(&st).map_or(next_tick, |e| e.min(next_tick));
            let sleep = units_to_duration(next.saturating_sub(to_units(self.started.elapsed())));
            st = self
                .changed
                .wait_timeout(st, sleep.max(Duration::from_micros(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
