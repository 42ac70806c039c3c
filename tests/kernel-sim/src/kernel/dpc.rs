//! `KDPC` objects and the DPC queues: initialisation, queuing (at most once), removal,
//! flushing, the dispatch windows of the virtual clock, and the DPC watchdog.

use std::ffi::c_void;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::bugcheck::{BugCheck, codes, routine};
use crate::trace::Event;
use crate::types::KDPC;

use super::{
    Clock, DeferredRoutine, DpcRec, Entry, EntryKind, Inner, ObjectKind, SendPtr, State,
    current_processor, remove_limit, to_units,
};

impl Inner {
    /// `KeInitializeDpc` after pointer checks. Returns the signature to write.
    pub(crate) fn initialize_dpc(
        &self,
        ptr: *mut KDPC,
        routine: DeferredRoutine,
        context: *mut c_void,
    ) -> u64 {
        let addr = ptr.addr();
        let signature = self.signature(ObjectKind::Dpc, addr);
        let mut st = self.lock();
        if let Some(existing) = st.dpcs.get(&addr)
            && existing.queued.is_some()
        {
            self.security_failure(
                st,
                codes::FAST_FAIL_CORRUPT_LIST_ENTRY,
                addr,
                0,
                routine::KE_INITIALIZE_DPC,
            );
        }
        let id = Self::allocate_id(&mut st);
        let null = SendPtr(std::ptr::null_mut());
        st.dpcs.insert(
            addr,
            DpcRec {
                id,
                signature,
                ptr: SendPtr(ptr),
                routine,
                context: SendPtr(context),
                arguments: (null, null),
                queued: None,
                running: 0,
            },
        );
        self.trace(&mut st, Event::DpcInitialized { dpc: id });
        signature
    }

    pub(super) fn next_cpu(&self, st: &mut State) -> usize {
        if let Some(cpu) = current_processor() {
            return cpu;
        }
        let cpu = st.next_cpu;
        st.next_cpu = (cpu + 1) % self.config.processors;
        cpu
    }

    pub(super) fn round_robin_cpu(&self, st: &mut State) -> usize {
        let cpu = st.next_cpu;
        st.next_cpu = (cpu + 1) % self.config.processors;
        cpu
    }

    /// Queues a DPC on `cpu` unless it is already queued.
    pub(super) fn queue_dpc(
        &self,
        st: &mut State,
        addr: usize,
        arguments: (*mut c_void, *mut c_void),
        cpu: usize,
    ) -> bool {
        let seq = st.next_queue_seq;
        let Some(dpc) = st.dpcs.get_mut(&addr) else {
            return false;
        };
        let id = dpc.id;
        if dpc.queued.is_some() {
            st.stats.dpcs_already_queued += 1;
            self.trace(st, Event::DpcAlreadyQueued { dpc: id });
            return false;
        }
        dpc.queued = Some((cpu, seq));
        dpc.arguments = (SendPtr(arguments.0), SendPtr(arguments.1));
        st.next_queue_seq += 1;
        st.queues[cpu].push_back(Entry {
            kind: EntryKind::Dpc,
            addr,
            id,
            seq,
        });
        st.stats.dpcs_queued += 1;
        self.trace(st, Event::DpcQueued { dpc: id, cpu });
        true
    }

    /// `KeInsertQueueDpc` after pointer checks.
    pub(crate) fn insert_queue_dpc(
        &self,
        addr: usize,
        signature: u64,
        arguments: (*mut c_void, *mut c_void),
    ) -> bool {
        let st = self.lock();
        let mut st = self.dpc_checked(st, addr, signature, routine::KE_INSERT_QUEUE_DPC);
        let already = st.dpcs.get(&addr).is_some_and(|d| d.queued.is_some());
        let cpu = if already { 0 } else { self.next_cpu(&mut st) };
        let queued = self.queue_dpc(&mut st, addr, arguments, cpu);
        drop(st);
        self.changed.notify_all();
        queued
    }

    /// `KeRemoveQueueDpc` after pointer checks.
    pub(crate) fn remove_queue_dpc(&self, addr: usize, signature: u64) -> bool {
        let st = self.lock();
        let mut st = self.dpc_checked(st, addr, signature, routine::KE_REMOVE_QUEUE_DPC);
        let Some(dpc) = st.dpcs.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let Some((cpu, seq)) = dpc.queued.take() else {
            return false;
        };
        let id = dpc.id;
        if let Some(position) = st.queues[cpu].iter().position(|e| e.seq == seq) {
            st.queues[cpu].remove(position);
        }
        self.trace(&mut st, Event::DpcRemoved { dpc: id });
        drop(st);
        self.changed.notify_all();
        true
    }

    /// `KeFlushQueuedDpcs` after the IRQL check: waits until every DPC queued before the
    /// call has run.
    pub(crate) fn flush_queued_dpcs(&self) {
        let st = self.lock();
        let limit = st.next_queue_seq;
        let st = self.wait_idle(st, limit, false);
        drop(st);
    }

    /// Whether no DPC with a queuing number below `limit` is queued or running.
    pub(super) fn drained_below(st: &State, limit: u64) -> bool {
        // Each queue is in queuing order (pushed at the back with a growing number, removed
        // from anywhere), so its head has its lowest number.
        let queued = st
            .queues
            .iter()
            .any(|q| q.front().is_some_and(|e| e.seq < limit));
        let running = st.running.iter().flatten().any(|r| r.entry.seq < limit);
        !queued && !running
    }

    pub(super) fn dispatch_limit(&self, st: &State) -> u64 {
        match self.config.clock {
            Clock::RealTime => u64::MAX,
            Clock::Virtual => st.dispatch_limits.iter().copied().max().unwrap_or(0),
        }
    }

    /// Lets processors run DPCs queued below `limit` (inline execution: runs them on this
    /// thread) and waits until those have run.
    /// `panic_on_crash`: control-API callers unwind with the bug check; kernel routines
    /// (flush) return inertly.
    pub(super) fn wait_idle<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        limit: u64,
        panic_on_crash: bool,
    ) -> MutexGuard<'a, State> {
        st.dispatch_limits.push(limit);
        self.changed.notify_all();
        let mut binding = None;
        loop {
            if let Some(bug_check) = st.bug_check {
                remove_limit(&mut st, limit);
                if panic_on_crash && !std::thread::panicking() {
                    drop(st);
                    std::panic::panic_any(bug_check);
                }
                return st;
            }
            // A full dispatch also lets every waiter released so far leave its wait, so what
            // follows the call does not race with the released threads' return.
            let waiters_pending =
                limit == u64::MAX && st.waiters.iter().any(|w| w.outcome.is_some());
            if st.shutdown || (Self::drained_below(&st, limit) && !waiters_pending) {
                break;
            }
            if self.inline
                && let Some((cpu, entry)) = self.pick_inline(&mut st, limit)
            {
                st = self.run_inline(st, cpu, entry, &mut binding);
                continue;
            }
            if let Some(bug_check) = self.watchdog(&st, Instant::now()) {
                remove_limit(&mut st, limit);
                if panic_on_crash {
                    self.fail(st, bug_check);
                }
                self.record(&mut st, bug_check);
                drop(st);
                self.changed.notify_all();
                return self.lock();
            }
            st = self.wait(st);
        }
        remove_limit(&mut st, limit);
        self.changed.notify_all();
        st
    }

    /// A `DPC_WATCHDOG_VIOLATION` if some DPC (or some processor's run of DPCs) has
    /// exceeded the budget by `now` (the caller's clock reading: one per check).
    pub(super) fn watchdog(&self, st: &State, now: Instant) -> Option<BugCheck> {
        let budget = self.config.dpc_watchdog;
        let ticks = |d: Duration| to_units(d) / self.increment();
        for running in st.running.iter().flatten() {
            let spent = now.saturating_duration_since(running.started);
            if spent > budget {
                return Some(BugCheck::new(
                    codes::DPC_WATCHDOG_VIOLATION,
                    [0, ticks(spent), ticks(budget), 0],
                ));
            }
        }
        let cumulative = self.config.dpc_watchdog_cumulative;
        for since in st.busy_since.iter().flatten() {
            let spent = now.saturating_duration_since(*since);
            if spent > cumulative {
                return Some(BugCheck::new(
                    codes::DPC_WATCHDOG_VIOLATION,
                    [1, ticks(spent), ticks(cumulative), 0],
                ));
            }
        }
        None
    }
}
