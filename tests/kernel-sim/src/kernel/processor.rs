//! The simulated processors: picking the next DPC (serial or parallel dispatch), running a
//! routine at `DISPATCH_LEVEL`, and the checks made when it returns.

use std::ffi::c_void;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::bugcheck::{BugCheck, codes};
use crate::trace::Event;
use crate::types::{DISPATCH_LEVEL, EX_TIMER, KDPC, KIRQL};

use super::{
    BOUND, CALLBACK_DEPTH, DISPATCH_IRQL, DeferredRoutine, Entry, EntryKind, ExCallback,
    ExTimerStorage, Inner, PROCESSOR, Running, SendPtr, State, irql, set_irql, thread_token,
    to_units,
};

impl Inner {
    /// Dequeues the next DPC `cpu` may run now, if any.
    pub(super) fn pick(&self, st: &mut State, cpu: usize) -> Option<Entry> {
        let head = *st.queues[cpu].front()?;
        if head.seq >= self.dispatch_limit(st) {
            return None;
        }
        if !self.config.parallel_dpcs {
            if st.running.iter().any(Option::is_some) {
                return None;
            }
            let earlier = st
                .queues
                .iter()
                .any(|q| q.front().is_some_and(|e| e.seq < head.seq));
            if earlier {
                return None;
            }
        }
        st.queues[cpu].pop_front()
    }

    pub(super) fn processor_main(self: Arc<Self>, cpu: usize) {
        BOUND.with(|bound| *bound.borrow_mut() = Some(Arc::clone(&self)));
        PROCESSOR.with(|p| p.set(Some(cpu)));
        set_irql(0);
        let mut st = self.lock();
        loop {
            if st.shutdown || st.bug_check.is_some() {
                break;
            }
            let Some(entry) = self.pick(&mut st, cpu) else {
                if st.queues[cpu].is_empty() {
                    st.busy_since[cpu] = None;
                }
                st = self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            st = self.run_entry(st, cpu, entry);
        }
        drop(st);
        BOUND.with(|bound| *bound.borrow_mut() = None);
    }

    /// Runs one dequeued DPC or `EX_TIMER` callback on `cpu` (lock released meanwhile), on
    /// the calling thread: a processor thread, or an inline dispatcher (module `inline`).
    pub(super) fn run_entry<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        cpu: usize,
        entry: Entry,
    ) -> MutexGuard<'a, State> {
        enum Call {
            Dpc(
                DeferredRoutine,
                SendPtr<KDPC>,
                SendPtr<c_void>,
                (SendPtr<c_void>, SendPtr<c_void>),
            ),
            Ex(ExCallback, SendPtr<ExTimerStorage>, SendPtr<c_void>),
        }
        let call = match entry.kind {
            EntryKind::Dpc => match st.dpcs.get_mut(&entry.addr) {
                Some(dpc) if dpc.id == entry.id => {
                    dpc.queued = None;
                    dpc.running += 1;
                    let call = Call::Dpc(dpc.routine, dpc.ptr, dpc.context, dpc.arguments);
                    st.stats.dpc_runs += 1;
                    call
                }
                _ => return st,
            },
            EntryKind::ExTimer => match st.ex_timers.get_mut(&entry.addr) {
                Some(timer) if timer.id == entry.id => {
                    let Some(callback) = timer.callback else {
                        timer.queued = None;
                        return st;
                    };
                    timer.queued = None;
                    timer.running += 1;
                    let call = Call::Ex(callback, timer.ptr, timer.context);
                    st.stats.ex_callback_runs += 1;
                    call
                }
                _ => return st,
            },
        };
        let started = Instant::now();
        st.running[cpu] = Some(Running {
            entry,
            started,
            thread: thread_token(),
        });
        if st.busy_since[cpu].is_none() {
            st.busy_since[cpu] = Some(started);
        }
        self.trace(&mut st, Event::DpcStarted { dpc: entry.id, cpu });
        drop(st);

        // A processor thread is at PASSIVE_LEVEL here; an inline dispatcher at its caller's.
        let caller_irql = irql();
        set_irql(DISPATCH_IRQL);
        CALLBACK_DEPTH.with(|depth| depth.set(depth.get() + 1));
        let routine_address = match call {
            Call::Dpc(routine, dpc, context, (argument1, argument2)) => {
                // SAFETY: the routine and its arguments are what the driver registered with
                // KeInitializeDpc / KeInsertQueueDpc; the kernel contract (which the verifier
                // checks enforce) keeps the KDPC and context valid while it is queued/running.
                unsafe { routine(dpc.0, context.0, argument1.0, argument2.0) };
                routine as usize
            }
            Call::Ex(callback, timer, context) => {
                // SAFETY: as above, for the callback registered with ExAllocateTimer; the
                // `EX_TIMER` storage is owned by the kernel and freed only after the last run.
                unsafe { callback(timer.0.cast::<EX_TIMER>(), context.0) };
                callback as usize
            }
        };
        CALLBACK_DEPTH.with(|depth| depth.set(depth.get() - 1));
        let returned_irql = irql();
        set_irql(caller_irql);

        let st = self.lock();
        self.finish_run(st, cpu, entry, returned_irql, routine_address, started)
    }

    /// Bookkeeping and checks after a DPC routine or callback returned.
    pub(super) fn finish_run<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        cpu: usize,
        entry: Entry,
        returned_irql: KIRQL,
        routine_address: usize,
        started: Instant,
    ) -> MutexGuard<'a, State> {
        st.running[cpu] = None;
        match entry.kind {
            EntryKind::Dpc => {
                if let Some(dpc) = st.dpcs.get_mut(&entry.addr).filter(|d| d.id == entry.id) {
                    dpc.running = dpc.running.saturating_sub(1);
                }
            }
            EntryKind::ExTimer => self.finish_ex_callback(&mut st, entry),
        }
        self.trace(&mut st, Event::DpcFinished { dpc: entry.id, cpu });
        if u32::from(returned_irql) != DISPATCH_LEVEL && st.bug_check.is_none() {
            let expected = u64::from(DISPATCH_LEVEL);
            self.record(
                &mut st,
                BugCheck::new(
                    codes::IRQL_UNEXPECTED_VALUE,
                    [
                        (u64::from(returned_irql) << 16) | expected,
                        routine_address as u64,
                        0,
                        0,
                    ],
                ),
            );
        }
        let now = Instant::now();
        let spent = now.saturating_duration_since(started);
        if spent > self.config.dpc_watchdog && st.bug_check.is_none() {
            let ticks = |d: Duration| to_units(d) / self.increment();
            self.record(
                &mut st,
                BugCheck::new(
                    codes::DPC_WATCHDOG_VIOLATION,
                    [0, ticks(spent), ticks(self.config.dpc_watchdog), 0],
                ),
            );
        }
        if let Some(bug_check) = self.watchdog(&st, now)
            && st.bug_check.is_none()
        {
            self.record(&mut st, bug_check);
        }
        if st.queues[cpu].is_empty() {
            st.busy_since[cpu] = None;
        }
        drop(st);
        self.changed.notify_all();
        self.lock()
    }
}
